"""The welcome email on the ledger: one ``Welcome`` row per reader, queued when they confirm
(``subscribers.service.queue_welcome``), then pending → sending (claimed by one sender, a conditional
UPDATE) → sent | failed | unknown | suppressed, like an issue's deliveries.

Sent right after the confirmation (a background task of the web app) and by a sweep (the scheduler's
regular pass, ``verdicts subscribers welcome``) that sends what a crash left pending. A sender that died
holding a claim: its welcome goes back to the queue where the provider dedupes (the Message-ID is the row's,
so the outbox and Resend replace or ignore a second copy), else it is ``unknown`` and never sent again.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select, update

from pipeline.config import Settings
from pipeline.delivery.ledger import _ROW_STATUS, STOPPED_IN_FLIGHT, _reason, dead_claims, new_worker_id
from pipeline.delivery.messages import BUILD_ERRORS, compliance_headers, payload_problem
from pipeline.delivery.oneoff import send_checked
from pipeline.delivery.providers import Outcome, OutgoingMessage, Provider, SendOutcome, get_provider
from pipeline.delivery.stop import STOP
from pipeline.email.render import Recipient
from pipeline.email.welcome import RenderedWelcome, render_welcome, welcome_values
from pipeline.errors import RenderError
from pipeline.store.db import get_engine, session_scope
from pipeline.store.models import DeliveryStatus, Welcome, saved_id, utcnow
from subscribers.models import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

CAMPAIGN = "welcome"


@dataclass
class WelcomeSummary:
    """What a sweep did, for the CLI and the scheduler's log."""

    sent: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0
    waiting: int = 0  # deferred by the provider, or claimed by another sender: the next sweep has them
    requeued: int = 0  # a dead sender's claims, back in the queue (the provider dedupes)

    def line(self) -> str:
        return (
            f"Welcome emails: {self.sent} sent, {self.failed} failed, {self.unknown} unknown, "
            f"{self.suppressed} suppressed (the reader left), {self.waiting} waiting."
        )

    @property
    def anything(self) -> bool:
        return any((self.sent, self.failed, self.unknown, self.suppressed, self.waiting, self.requeued))


def welcome_message(
    rendered: RenderedWelcome,
    recipient: Recipient,
    settings: Settings,
    *,
    welcome_id: int | None,
    subject_prefix: str = "",
) -> OutgoingMessage:
    """A reader's welcome with the newsletter's List-Unsubscribe, List-Unsubscribe-Post and List-Id. Its
    Message-ID names the row, so a re-send after a crash is the same message to a provider that dedupes."""
    values = welcome_values(settings, recipient, rendered.latest_week)
    domain = settings.from_email.rpartition("@")[2]
    ref = f"w{welcome_id}" if welcome_id is not None else f"test-{secrets.token_hex(6)}"
    return OutgoingMessage(
        to_email=recipient.email,
        to_name=recipient.name,
        message_id=f"<{CAMPAIGN}.{ref}@{domain}>",
        delivery_id=None,  # not an issue's delivery: webhooks find it by its provider id or address
        body=rendered.body,
        values=values,
        headers=compliance_headers(settings, values["unsubscribe_url"]),
        subject_prefix=subject_prefix,
    )


def sendable_welcome(session: Session, settings: Settings) -> RenderedWelcome:
    """The rendered welcome, refused (nothing claimed, every row still pending) if it fails the issue's lint."""
    rendered = render_welcome(session, settings)
    if rendered.lint.errors:
        raise RenderError("the welcome email fails lint: " + "; ".join(rendered.lint.errors))
    return rendered


def _claim(session: Session, welcome_id: int, worker: str) -> bool:
    """pending → sending for this sender alone: of two senders (two web processes, a sweep), one moves it."""
    moved = session.exec(
        update(Welcome)
        .where(col(Welcome.id) == welcome_id, col(Welcome.status) == DeliveryStatus.pending)
        .values(
            status=DeliveryStatus.sending, claimed_by=worker, claimed_at=utcnow(), attempts=col(Welcome.attempts) + 1
        )
    ).rowcount
    session.commit()
    return bool(moved)


def _settle(session: Session, welcome_id: int, values: dict[str, Any]) -> None:
    session.exec(
        update(Welcome)
        .where(col(Welcome.id) == welcome_id, col(Welcome.status) == DeliveryStatus.sending)
        .values(**values)
    )
    session.commit()


def _outcome_values(outcome: SendOutcome, provider: str) -> dict[str, Any]:
    if outcome.state is Outcome.deferred:  # free for the next sweep
        return {"status": DeliveryStatus.pending, "claimed_by": None, "error": outcome.error and _reason(outcome.error)}
    sent = outcome.state is Outcome.sent
    return {
        "status": _ROW_STATUS[outcome.state],
        "provider": provider,
        "error": outcome.error and _reason(outcome.error),
        "sent_at": utcnow() if sent else None,
        "provider_message_id": outcome.provider_message_id if sent else None,
    }


def deliver(
    session: Session, settings: Settings, provider: Provider, rendered: RenderedWelcome, welcome_id: int, worker: str
) -> DeliveryStatus | None:
    """Claim one welcome, send it, record what became of it; None when another sender holds it."""
    if not _claim(session, welcome_id, worker):
        return None
    row = session.get(Welcome, welcome_id)
    reader = session.get(Subscriber, row.subscriber_id) if row and row.subscriber_id else None
    now = utcnow()
    if (
        row is None
        or reader is None
        or reader.status is not SubscriberStatus.confirmed
        or (reader.paused_until is not None and reader.paused_until > now)
    ):  # left, paused or erased since confirming: nothing is sent
        _settle(session, welcome_id, {"status": DeliveryStatus.suppressed})
        return DeliveryStatus.suppressed
    message = welcome_message(
        rendered, Recipient(saved_id(reader), reader.email, reader.name), settings, welcome_id=welcome_id
    )
    if problem := payload_problem(provider, message, settings, CAMPAIGN):
        _settle(session, welcome_id, {"status": DeliveryStatus.failed, "error": f"the message {problem}"[:1000]})
        return DeliveryStatus.failed
    try:
        [outcome] = provider.send_batch([message], campaign=CAMPAIGN)
    except BUILD_ERRORS as exc:  # refused before it left
        _settle(session, welcome_id, {"status": DeliveryStatus.failed, "error": _reason(str(exc))})
        return DeliveryStatus.failed
    except BaseException:
        # With the provider when it stopped: only a provider that dedupes may be handed it again.
        session.rollback()
        again = {"status": DeliveryStatus.pending, "claimed_by": None}
        _settle(
            session,
            welcome_id,
            again if provider.idempotent else {"status": DeliveryStatus.unknown, "error": STOPPED_IN_FLIGHT},
        )
        raise
    _settle(session, welcome_id, _outcome_values(outcome, provider.name))
    return _ROW_STATUS[outcome.state]


def recover_stale_welcomes(session: Session, settings: Settings, provider: Provider) -> int:
    """Welcomes claimed by senders that died: back to the queue where the provider dedupes, else unknown
    (a reader may have it already, and a second welcome is worse than none). Returns how many were re-queued."""
    claims = session.exec(
        select(col(Welcome.id), Welcome.claimed_by, Welcome.claimed_at).where(
            col(Welcome.status) == DeliveryStatus.sending
        )
    ).all()
    dead = dead_claims(claims, settings)
    if not dead:
        return 0
    values: dict[str, Any] = (
        {"status": DeliveryStatus.pending, "claimed_by": None}
        if provider.idempotent
        else {
            "status": DeliveryStatus.unknown,
            "error": "the sender stopped during the request; the outcome is unknown",
        }
    )
    session.exec(
        update(Welcome).where(col(Welcome.id).in_(dead), col(Welcome.status) == DeliveryStatus.sending).values(**values)
    )
    session.commit()
    log.info("%d welcome emails a stopped sender held are now %s", len(dead), values["status"].value)
    return len(dead) if provider.idempotent else 0


def send_pending_welcomes(settings: Settings, provider: Provider | None = None) -> WelcomeSummary:
    """The sweep: resolve dead senders' claims, then send every welcome still pending."""
    summary = WelcomeSummary()
    own = provider is None
    provider = provider or get_provider(settings)
    worker = new_worker_id()
    try:
        with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
            summary.requeued = recover_stale_welcomes(session, settings, provider)
            query = select(col(Welcome.id)).where(col(Welcome.status) == DeliveryStatus.pending)
            pending = [i for i in session.exec(query.order_by(col(Welcome.id))) if i is not None]
            if not pending:
                return summary
            rendered = sendable_welcome(session, settings)
            for welcome_id in pending:
                if STOP.is_set():
                    break
                status = deliver(session, settings, provider, rendered, welcome_id, worker)
                _count(summary, status)
                if status is DeliveryStatus.pending:  # the provider is not taking mail now: the next sweep tries
                    break
    finally:
        if own:
            provider.close()
    return summary


def _count(summary: WelcomeSummary, status: DeliveryStatus | None) -> None:
    if status is None or status is DeliveryStatus.pending:
        summary.waiting += 1
    else:
        name = status.value
        setattr(summary, name, getattr(summary, name) + 1)


def welcome_reader(settings: Settings, subscriber_id: int) -> None:
    """Right after a confirmation (a background task, after the answer): this reader's welcome, if it is still
    pending. A failure is logged; the row stays pending for the sweep unless the provider may have it."""
    try:
        with session_scope(settings.database_url) as session:
            welcome_id = session.exec(
                select(col(Welcome.id)).where(
                    col(Welcome.subscriber_id) == subscriber_id, col(Welcome.status) == DeliveryStatus.pending
                )
            ).first()
            if welcome_id is None:  # welcomed before, or another process has it
                return
            rendered = sendable_welcome(session, settings)
            provider = get_provider(settings)
            try:
                deliver(session, settings, provider, rendered, welcome_id, new_worker_id())
            finally:
                provider.close()
    except Exception as exc:  # after the answer, a log line is the only place it can go
        log.warning(
            "the welcome email of reader %s was not sent (the scheduler's sweep retries): %s", subscriber_id, exc
        )


def send_test_welcome(session: Session, settings: Settings, addresses: list[str]) -> list[tuple[str, SendOutcome]]:
    """``[TEST]`` copies of the welcome: no ledger row, links act for nobody (reader 0), as an issue's test copy."""
    rendered = render_welcome(session, settings)
    messages = [
        welcome_message(rendered, Recipient(0, a, "Editor"), settings, welcome_id=None, subject_prefix="[TEST] ")
        for a in addresses
    ]
    outcomes = send_checked(settings, messages, CAMPAIGN, "the test copy of the welcome email")
    return list(zip(addresses, outcomes, strict=True))


def welcome_address(session: Session, provider_message_id: str | None) -> str | None:
    """The address a welcome went to, by the provider's id: what a bounce or complaint about it suppresses
    when the event does not name the address itself."""
    if not provider_message_id:
        return None
    return session.exec(
        select(col(Welcome.email)).where(col(Welcome.provider_message_id) == provider_message_id).limit(1)
    ).first()
