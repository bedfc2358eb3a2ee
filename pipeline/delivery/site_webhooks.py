"""The sender of the site's webhooks: drains ``pipeline.store.site_events`` in creation order, one POST at a time,
each signed as ``X-Verdicts-Signature: sha256=HMAC(secret, "<X-Verdicts-Timestamp>.<body>")``.

Run by a thread in each web process (woken at once by a vote, else every few seconds), by the scheduler's regular
pass and by `verdicts webhooks send`; any number of them at once deliver each event once in the normal case.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass

import httpx
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from pipeline.config import Settings
from pipeline.content.votes import community_now
from pipeline.delivery.stop import STOP
from pipeline.errors import VerdictsError
from pipeline.store.db import get_engine
from pipeline.store.models import WebhookEvent, WebhookEventStatus
from pipeline.store.site_events import claim_next, settle

log = logging.getLogger(__name__)

#: Seconds for each phase of a request (connect, write, read): a hung site cannot hold the queue longer.
TIMEOUT = 10.0
#: How often a web process's sender looks for due events when nothing wakes it.
POLL_SECONDS = 2.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``: what the site verifies."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def body_of(session: Session, event: WebhookEvent, old_votes_endpoint: bool) -> bytes:
    """The envelope ``{id, type, created_at, data}``; a vote as the old votes endpoint took it (``{"event": "vote",
    ...}``) when the site still listens there. A vote carries its tool's community split as counted now."""
    data = dict(event.payload)
    if event.type == "vote.cast":
        data["community"] = community_now(session, str(data["comparison"]), str(data["tool"]))
        if old_votes_endpoint:
            return _json({"event": "vote", **data})
    return _json({"id": event.uid, "type": event.type, "created_at": event.created_at.isoformat(), "data": data})


def _json(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def post(
    client: httpx.Client, url: str, secret: str, event: WebhookEvent, body: bytes
) -> tuple[int | None, str | None]:
    """One attempt: (the site's status, None) on a 2xx, else (status or None, what went wrong)."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Verdicts-Event": event.type,
        "X-Verdicts-Event-Id": event.uid,
        "X-Verdicts-Timestamp": timestamp,
        "X-Verdicts-Signature": sign(secret, timestamp, body),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"no answer: {type(exc).__name__}: {exc}"
    if response.is_success:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


@dataclass
class WebhookRun:
    """What one drain did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"Webhooks: {self.delivered} delivered, {self.retrying} to retry later, {self.failed} given up."

    @property
    def anything(self) -> bool:
        return any((self.delivered, self.retrying, self.failed))


def send_due(settings: Settings, stop: threading.Event | None = None) -> WebhookRun:
    """Send the due events in order until none is due or one fails (the ones after it wait for it)."""
    run = WebhookRun()
    site = settings.site_webhook
    if site is None:
        return run
    url, secret, old_votes_endpoint = site
    with (
        Session(get_engine(settings.database_url), expire_on_commit=False) as session,
        httpx.Client(timeout=TIMEOUT) as client,
    ):
        while not STOP.is_set() and not (stop and stop.is_set()):
            event = claim_next(session)
            if event is None:
                break
            body = body_of(session, event, old_votes_endpoint)
            session.commit()  # ends the read: no snapshot held open over the request
            status, error = post(client, url, secret.get_secret_value(), event, body)
            outcome = settle(session, event, status, error, settings)
            if outcome is WebhookEventStatus.delivered:
                run.delivered += 1
                continue
            log.warning(
                "webhook event %s (%s) not delivered, attempt %d: %s%s",
                event.uid,
                event.type,
                event.attempts,
                error,
                "; given up" if outcome is WebhookEventStatus.failed else "",
            )
            if outcome is WebhookEventStatus.failed:
                run.failed += 1
            else:
                run.retrying += 1
                break
    return run


def sweep(settings: Settings) -> None:
    """The scheduler's pass: a failure here never fails its other work (it is logged; the next pass tries)."""
    try:
        run = send_due(settings)
    except (VerdictsError, SQLAlchemyError) as exc:
        log.error("sending the site's webhooks failed: %s", exc)
        return
    if run.anything:
        log.info(run.line())


class SiteWebhookSender:
    """A web process's sender thread: it looks every POLL_SECONDS, and at once when woken (after a vote)."""

    def __init__(self, settings: Settings, poll: float = POLL_SECONDS) -> None:
        self.settings, self.poll = settings, poll
        self._wake, self._stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="site-webhooks", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                send_due(self.settings, self._stop)
            except Exception:  # the thread outlives any one failure: the next look tries again
                log.exception("sending the site's webhooks failed")
            self._wake.wait(self.poll)
            self._wake.clear()


def site_webhook_sender(settings: Settings) -> SiteWebhookSender | None:
    """The app's sender thread, made by ``create_app``; None when no site listens."""
    return SiteWebhookSender(settings) if settings.site_webhook else None
