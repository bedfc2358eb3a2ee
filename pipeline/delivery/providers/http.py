"""What every HTTP API provider shares: chunking, retries, throttling, concurrency.

A provider module declares its facts as class attributes (limits, paths, credentials,
rate-limit headers) and writes three small methods: build the request for a chunk,
read the answer, and read a webhook. Everything that decides *whether* to send again
lives here, once:

* no connection, 429 and 5xx → retried with exponential backoff and jitter, honouring
  ``Retry-After`` and the provider's rate-limit reset header; still failing → deferred;
* an answer that never came after the request left → unknown (never sent twice), except
  where the provider dedupes by ``Idempotency-Key``, which makes the retry safe;
* 401/403 → a configuration problem; other 4xx → the chunk is refused (and split in two
  to find the bad message, where the provider answers for the whole request only).

What a request carries is built in ``request``; the answer's words and wait times are read in ``answers``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import httpx
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from pipeline.config import Settings
from pipeline.delivery.providers.answers import RateHeaders, detail, header_seconds
from pipeline.delivery.providers.base import (
    BatchRejected,
    CheckResult,
    Outcome,
    OutcomeUnknown,
    OutgoingMessage,
    ProviderConfigError,
    ProviderUnavailable,
    SendOutcome,
    WebhookReply,
)
from pipeline.delivery.providers.request import ApiRequest
from pipeline.delivery.providers.webhooks import require_fresh

log = logging.getLogger(__name__)


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.may_have_left = False  # this attempt, or an earlier one of the same call, left without an answer


class ApiProvider:
    name: ClassVar[str]
    default_base_url: ClassVar[str]
    #: Settings fields that must be set, e.g. ``("postmark_server_token",)``.
    credentials: ClassVar[tuple[str, ...]]
    #: Documented limits of one API call.
    per_request: ClassVar[int]
    max_request_bytes: ClassVar[int]
    #: One body per request with per-recipient values (Mailgun, SendGrid).
    merges: ClassVar[bool] = False
    #: The answer carries one result per message (else a 4xx refuses the whole request).
    per_message_results: ClassVar[bool] = False
    #: The provider dedupes a retried request by its Idempotency-Key (Resend).
    retry_is_safe: ClassVar[bool] = False
    rate_headers: ClassVar[RateHeaders | None] = None
    config_statuses: ClassVar[tuple[int, ...]] = (401, 403)
    #: Answers that do not say whether the messages went (Resend 409: the same key is still being processed).
    unknown_statuses: ClassVar[tuple[int, ...]] = ()
    #: Phrases that make a 400 a throttling signal (SES says "Maximum sending rate exceeded").
    throttle_phrases: ClassVar[tuple[str, ...]] = ()
    check_path: ClassVar[str]
    #: What to check when the provider refuses the credentials (default: the ``credentials`` variables).
    credentials_hint: ClassVar[str | None] = None
    idempotent = False  # a crashed sender's rows cannot be re-sent blindly
    #: How long after an event the provider may still deliver a retry that carries the event's first
    #: signed timestamp (its documented retry schedule); 0 when every attempt is signed anew.
    webhook_retry_seconds: ClassVar[int] = 0

    @classmethod
    def require_fresh(cls, settings: Settings, timestamp: str | int | float | None) -> None:
        """The freshness window is the provider's retry schedule plus the configured slack (clock skew
        and queueing): shorter would lose bounces and complaints for good after an outage; replays
        inside it are caught by the stored event ids."""
        slack = settings.webhook_max_age_seconds
        require_fresh(timestamp, cls.webhook_retry_seconds + slack, slack)

    def __init__(self, settings: Settings) -> None:
        missing = [f for f in self.credentials if not getattr(settings, f)]
        if missing:
            names = " and ".join(f"VERDICTS_{f.upper()}" for f in missing)
            raise ProviderConfigError(f"the {self.name} provider needs {names}: set it in the environment or .env")
        self.settings = settings
        self.max_batch = self.per_request * settings.provider_concurrency
        # The documented limit, or less: a request's body (and its copies in memory) stays small.
        self.request_bytes = min(self.max_request_bytes, int(settings.provider_max_request_mb * 1024 * 1024))
        self.client = httpx.Client(
            base_url=(settings.provider_base_url or self.base_url()).rstrip("/"),
            timeout=httpx.Timeout(
                settings.provider_timeout_seconds, connect=min(10.0, settings.provider_timeout_seconds)
            ),
            headers={"Accept": "application/json", "User-Agent": "weekly-ai-tool-verdicts", **self.auth_headers()},
            auth=self.auth(),
        )
        self._pool = (
            ThreadPoolExecutor(settings.provider_concurrency, thread_name_prefix=self.name)
            if settings.provider_concurrency > 1
            else None
        )
        self._lock = threading.Lock()
        self._resume_at = 0.0

    # --- what each provider module writes -------------------------------------------

    def credential(self, name: str) -> str:
        """One of ``credentials`` as text: ``__init__`` refused to start without it."""
        value = getattr(self.settings, name)
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def base_url(self) -> str:
        return self.default_base_url

    def auth_headers(self) -> dict[str, str]:
        return {}

    def auth(self) -> httpx.Auth | None:
        return None

    def build_request(self, chunk: Sequence[OutgoingMessage], campaign: str) -> ApiRequest:
        raise NotImplementedError

    def parse_response(self, response: httpx.Response, chunk: Sequence[OutgoingMessage]) -> list[SendOutcome]:
        raise NotImplementedError

    def sign(self, method: str, url: str, content: bytes, headers: dict[str, str]) -> dict[str, str]:
        """Headers to add right before each attempt (SES signs with the current time)."""
        return {}

    @classmethod
    def read_webhook(cls, settings: Settings, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        """Verify the request (raise WebhookRejected), then normalise its events."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------------
    def send_batch(self, messages: Sequence[OutgoingMessage], *, campaign: str) -> list[SendOutcome]:
        halted: list[SendOutcome] = []  # a configuration problem in one request: the rest wait

        def one(chunk: list[OutgoingMessage]) -> list[SendOutcome]:
            if halted:
                return [halted[0]] * len(chunk)
            outcomes = self._send_chunk(chunk, campaign)
            halted.extend(o for o in outcomes[:1] if o.config_problem)
            return outcomes

        chunks = list(self.chunks(messages))
        if self._pool is None or len(chunks) == 1:
            results = [one(c) for c in chunks]
        else:
            results = list(self._pool.map(one, chunks))
        return [outcome for result in results for outcome in result]

    def chunks(self, messages: Sequence[OutgoingMessage]) -> Iterator[list[OutgoingMessage]]:
        """Requests up to the documented count and byte limits, in order; a merged body counts once.
        A message the provider could not merge (``can_merge``) goes alone, with its own body."""
        chunk: list[OutgoingMessage] = []
        size = 0
        for m in messages:
            if self.merges and not self.can_merge(m):
                if chunk:
                    yield chunk
                chunk, size = [], 0
                yield [m]
                continue
            shares_body = self.merges and chunk and m.body is chunk[0].body and m.subject == chunk[0].subject
            cost = m.extra_size() if shares_body else m.size()
            # A tenth of room for JSON escaping (quotes in HTML attributes, newlines): a request built
            # past the limit is halved and built again, which cost time and memory on every request.
            if chunk and (
                len(chunk) >= self.per_request
                or size + cost > self.request_bytes * 0.9
                or (self.merges and not shares_body)
            ):
                yield chunk
                chunk, size, cost = [], 0, m.size()
            chunk.append(m)
            size += cost
        if chunk:
            yield chunk

    def can_merge(self, message: OutgoingMessage) -> bool:
        """Whether this reader's values fit the provider's per-recipient limits."""
        return True

    def _send_chunk(self, chunk: list[OutgoingMessage], campaign: str, *, top: bool = True) -> list[SendOutcome]:
        request = self.build_request(chunk, campaign)
        content = request.content()
        if len(content[0]) > self.request_bytes and len(chunk) > 1:  # JSON escaping grew it past the limit
            half = len(chunk) // 2
            return self._send_chunk(chunk[:half], campaign) + self._send_chunk(chunk[half:], campaign)
        try:
            response = self.call(request, content)
        except BatchRejected as exc:
            if exc.per_message:
                return [SendOutcome(Outcome.failed, error=str(exc))] * len(chunk)
            if self.per_message_results:  # the provider judges messages one by one: a whole refusal is about us
                return [SendOutcome(Outcome.deferred, error=str(exc), config_problem=True)] * len(chunk)
            if len(chunk) == 1:
                return [SendOutcome(Outcome.failed, error=str(exc))]
            return self._bisect(chunk, campaign, exc, top)
        except OutcomeUnknown as exc:
            return [SendOutcome(Outcome.unknown, error=str(exc))] * len(chunk)
        except ProviderConfigError as exc:
            return [SendOutcome(Outcome.deferred, error=str(exc), config_problem=True)] * len(chunk)
        except ProviderUnavailable as exc:
            return [SendOutcome(Outcome.deferred, error=str(exc))] * len(chunk)
        try:
            return self.parse_response(response, chunk)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            # A success status with an answer we cannot read: the messages may well have been accepted.
            return [
                SendOutcome(
                    Outcome.unknown,
                    error=f"{self.name} answered {response.status_code} with a body that is not its API's: "
                    f"{response.text[:120]!r}",
                )
            ] * len(chunk)

    def _bisect(self, chunk: list[OutgoingMessage], campaign: str, exc: BatchRejected, top: bool) -> list[SendOutcome]:
        """All-or-nothing validation: halve until the bad address is alone. When both halves of
        the first split are refused too, the problem is the request itself (sender, content)."""
        half = len(chunk) // 2
        left = self._send_chunk(chunk[:half], campaign, top=False)
        right = self._send_chunk(chunk[half:], campaign, top=False)
        refused = all(o.state is Outcome.failed for o in left + right)
        if top and refused:
            return [
                SendOutcome(
                    Outcome.deferred, error=f"{exc} (every part of the request was refused)", config_problem=True
                )
            ] * len(chunk)
        return left + right

    def call(self, request: ApiRequest, content: tuple[bytes, dict[str, str]] | None = None) -> httpx.Response:
        """One API call with retries; raises the ProviderError subclass that says what happened."""
        s = self.settings
        retrying = Retrying(
            stop=stop_after_attempt(s.provider_retry_attempts) | stop_after_delay(s.provider_retry_seconds),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        body, headers = content or request.content()
        headers = {**headers, **request.headers}
        left = False
        try:
            for attempt in retrying:
                with attempt:
                    try:
                        return self._attempt(request, body, headers)
                    except _Transient as exc:
                        left = exc.may_have_left = left or exc.may_have_left
                        raise
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            if exc.may_have_left:
                # An earlier attempt may have been accepted: giving up must not let the rows go out again.
                raise OutcomeUnknown(
                    f"{self.name}: no answer, then {exc} (gave up after {attempts} attempts); it may have been accepted"
                ) from None
            raise ProviderUnavailable(f"{self.name}: {exc} (gave up after {attempts} attempts)") from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.settings.provider_retry_seconds)
        base = self.settings.provider_retry_base_seconds
        return wait_random_exponential(multiplier=base, max=max(base, 30.0))(state) if base else 0.0

    def _attempt(self, request: ApiRequest, content: bytes, headers: dict[str, str]) -> httpx.Response:
        self._wait_for_quota()
        url = f"{self.client.base_url}{request.path}"
        signed = {**headers, **self.sign(request.method, url, content, headers)}
        body = None
        if content:
            # A one-shot iterator, not bytes: httpx's request and response refer to each other, so
            # bytes would stay alive (megabytes per request) until the cyclic collector ran.
            signed["Content-Length"], body = str(len(content)), iter((content,))
        try:
            response = self.client.request(request.method, request.path, content=body, headers=signed)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Transient(f"no connection ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            if self.retry_is_safe:
                unanswered = _Transient(f"no answer ({type(exc).__name__})")
                unanswered.may_have_left = True
                raise unanswered from None
            raise OutcomeUnknown(
                f"{self.name} did not answer ({type(exc).__name__}) after the request left: it may have been accepted"
            ) from None
        self._note_quota(response)
        status = response.status_code
        if status == 429 or status >= 500 or (status == 400 and any(p in response.text for p in self.throttle_phrases)):
            raise _Transient(f"HTTP {status}: {detail(response)}", self._retry_after(response))
        if status in self.unknown_statuses:
            raise OutcomeUnknown(
                f"{self.name} answered HTTP {status} ({detail(response)}): the messages may have been accepted"
            )
        if status in self.config_statuses:
            raise ProviderConfigError(
                f"{self.name} refused the request (HTTP {status}: {detail(response)}); "
                f"check {self._credential_names()}",
                response=response,
            )
        if status >= 400:
            raise BatchRejected(
                f"{self.name} refused the request (HTTP {status}: {detail(response)})",
                per_message=self.refuses_one_message(response),
            )
        return response

    def refuses_one_message(self, response: httpx.Response) -> bool:
        return False

    def _credential_names(self) -> str:
        return self.credentials_hint or ", ".join(f"VERDICTS_{f.upper()}" for f in self.credentials)

    def _retry_after(self, response: httpx.Response) -> float | None:
        after = header_seconds(response.headers.get("retry-after"))
        # A reset time says when quota returns: it only matters when quota was the problem.
        if after is None and self.rate_headers and response.status_code == 429:
            after = self._reset_in(response.headers.get(self.rate_headers.reset))
        return after

    def _reset_in(self, value: str | None) -> float | None:
        seconds = header_seconds(value)
        if seconds is not None and self.rate_headers and self.rate_headers.reset_is_epoch:
            seconds = max(0.0, seconds - time.time())
        return seconds

    def _note_quota(self, response: httpx.Response) -> None:
        """Quota used up: the next request waits for the reset instead of collecting a 429."""
        if not self.rate_headers or response.headers.get(self.rate_headers.remaining) != "0":
            return
        reset = self._reset_in(response.headers.get(self.rate_headers.reset))
        if reset:
            with self._lock:
                self._resume_at = max(
                    self._resume_at, time.monotonic() + min(reset, self.settings.provider_retry_seconds)
                )

    def _wait_for_quota(self) -> None:
        with self._lock:
            delay = self._resume_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def check(self) -> CheckResult:
        try:
            response = self.call(ApiRequest("GET", self.check_path))
        except OutcomeUnknown as exc:  # a GET changes nothing, but it still did not answer
            raise ProviderUnavailable(str(exc)) from None
        except BatchRejected as exc:
            raise ProviderConfigError(str(exc)) from None
        except ProviderConfigError as exc:
            # A key made to send and nothing else is what a careful operator deploys: not a wrong key.
            unverified = self.sending_only(exc.response) if exc.response is not None else None
            if unverified is None:
                raise
            return CheckResult(f"the {self.name} credentials are accepted for sending only", unverified)
        return CheckResult(self.describe_check(response))

    def describe_check(self, response: httpx.Response) -> str:
        return f"{self.name} answered {response.status_code} at {self.check_path}"

    def sending_only(self, refusal: httpx.Response) -> str | None:
        """When the check's read was refused: what could not be verified, if the credentials are genuine but
        may only send (the provider says so, or a probe that sends nothing shows it); None for a wrong credential."""
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.client.close()
