"""The provider interface: what every email provider module offers the sender."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from pipeline.email.personal import Body, JsonText, html_values, json_values
from pipeline.errors import VerdictsError

if TYPE_CHECKING:  # httpx is imported by the API providers only
    import httpx


@dataclass(slots=True)
class OutgoingMessage:
    """One private copy for one reader, with the headers compliance requires.

    The body is shared by the whole send; ``values`` are this reader's slot values, so a
    provider can either ask for the finished copy (``html``/``text``) or merge on its side.
    Not frozen, though never changed: a frozen dataclass sets every field through
    ``object.__setattr__``, a microsecond per reader on a list of a million.
    """

    to_email: str
    to_name: str
    message_id: str
    # Correlation for webhooks: the delivery row this message belongs to (None for test sends).
    delivery_id: int | None
    body: Body
    values: Mapping[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    subject_prefix: str = ""

    @property
    def subject(self) -> str:
        return self.subject_prefix + self.body.subject

    @property
    def html(self) -> str:
        return self.body.html.fill(html_values(self.values))

    @property
    def text(self) -> str:
        return self.body.text.fill(self.values)

    def json_bodies(self) -> tuple[JsonText, JsonText]:
        """``html`` and ``text`` as JSON strings, for providers whose requests are JSON (built with
        ``personal.dumps``)."""
        html_escaped, text_escaped = json_values(self.values)
        return self.body.html.fill_json(html_escaped), self.body.text.fill_json(text_escaped)

    def size(self) -> int:
        """Bytes this message adds to a request that carries its whole body."""
        return self.body.size() + self.extra_size()

    def extra_size(self) -> int:
        """Bytes this message adds to a request whose body is merged on the provider's side."""
        return 2 * sum(map(len, self.values.values())) + sum(map(len, self.headers.values())) + 512


@dataclass(frozen=True)
class CheckResult:
    """What `providers check` found. ``unverified``: credentials that may send but not read the
    account (a sending-only key) pass, and this says what could therefore not be checked."""

    summary: str
    unverified: str | None = None


class Outcome(StrEnum):
    sent = "sent"  # the provider accepted it
    failed = "failed"  # refused for good (bad address, inactive recipient): never retried
    unknown = "unknown"  # the request may have been accepted: check before sending again
    deferred = "deferred"  # not accepted, for now (outage, throttling): back to the queue


@dataclass(frozen=True)
class SendOutcome:
    """What the provider said about one message, in the order the messages were given."""

    state: Outcome
    provider_message_id: str | None = None
    error: str | None = None
    #: A deferral caused by configuration (credentials, domain): sending again cannot help.
    config_problem: bool = False

    @property
    def ok(self) -> bool:
        return self.state is Outcome.sent


class ProviderError(VerdictsError):
    """The provider could not take the request; nothing was sent."""


class ProviderConfigError(ProviderError):
    """A missing or refused credential, an unknown domain: fix the configuration, then send again.
    ``response``: the provider's refusal, when it answered one (`providers check` reads it)."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


class ProviderUnavailable(ProviderError):
    """The provider kept failing (5xx, 429, no connection) through every retry."""


class BatchRejected(ProviderError):
    """The provider answered and refused the whole request (a 4xx); ``per_message`` when the
    refusal is about the one message the request carried (SES ``MessageRejected``)."""

    def __init__(self, message: str, *, per_message: bool = False) -> None:
        super().__init__(message)
        self.per_message = per_message


class OutcomeUnknown(ProviderError):
    """The request left but no answer came back: the messages may or may not have been accepted."""


class WebhookRejected(VerdictsError):
    """A webhook request whose authenticity could not be verified: answered 401, nothing changes."""


class EventKind(StrEnum):
    accepted = "accepted"
    delivered = "delivered"
    bounced = "bounced"  # hard: the address is gone
    soft_bounced = "soft_bounced"  # temporary: counted, suppressed after several in a row
    complained = "complained"
    unsubscribed = "unsubscribed"
    opened = "opened"
    clicked = "clicked"
    other = "other"  # stored (a replayed token or id is recognised) but changes nothing


def _storable(name: str, value: object, *, optional: bool = True) -> None:
    """Webhook payloads are untrusted: a value the database cannot store (NUL, lone surrogates, a
    number where text belongs) is refused here, as unreadable, before it can fail a transaction."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"the event's {name} is {value!r:.80}, not text")
    if not value.isprintable():  # NUL (PostgreSQL refuses it) and lone surrogates (UTF-8 cannot hold them)
        raise ValueError(f"the event's {name} {value!r:.80} holds control characters")


@dataclass(frozen=True)
class ProviderEvent:
    """One webhook event, the same whatever the provider; its fields are checked on creation, so
    nothing a payload can hold reaches the database in a shape it refuses."""

    event_id: str
    kind: EventKind
    email: str | None
    delivery_id: int | None = None
    provider_message_id: str | None = None
    occurred_at: datetime | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        _storable("event id", self.event_id, optional=False)
        _storable("recipient", self.email)
        _storable("message id", self.provider_message_id)
        if self.delivery_id is not None and (type(self.delivery_id) is not int or not 0 < self.delivery_id < 2**63):
            raise ValueError(f"the event's delivery id {self.delivery_id!r:.80} is not a row id")
        if self.occurred_at is not None and not isinstance(self.occurred_at, datetime):
            raise ValueError(f"the event's time {self.occurred_at!r:.80} is not a moment")
        # Free text from remote mail servers: kept readable rather than refused.
        detail = str(self.detail).encode("utf-8", "backslashreplace").decode().replace("\x00", "")[:300]
        object.__setattr__(self, "detail", detail)


@dataclass(frozen=True)
class WebhookReply:
    """What the route answers; ``events`` are recorded, ``confirm_url`` is fetched (SNS subscriptions).
    ``nonce``: a signed value the provider never sends twice for different events (Mailgun's token):
    it is recorded once, and a request reusing it stores nothing."""

    events: list[ProviderEvent]
    confirm_url: str | None = None
    nonce: str | None = None


class Provider(Protocol):
    name: str
    #: How many messages the sender should hand over in one ``send_batch`` call.
    max_batch: int
    #: True when re-sending a message after a crash cannot make a second copy
    #: (the outbox overwrites its file).
    idempotent: bool

    def send_batch(self, messages: Sequence[OutgoingMessage], *, campaign: str) -> list[SendOutcome]:
        """One outcome per message, in order; request failures become failed/unknown/deferred outcomes."""
        ...

    def check(self) -> CheckResult:
        """A cheap, harmless call proving the configuration works; what it found. Raises
        ProviderConfigError for a credential the provider refuses."""
        ...

    def close(self) -> None: ...
