"""The campaign loop: freeze the audience, then claim a batch, personalise, hand it to the
provider, record the outcome, repeat — until every delivery row has an outcome.

Every step is its own short transaction, so a crash at any moment leaves each row
either pending (sent later), sent (never again), or claimed by a sender that died,
which the next run resolves: re-sent where the provider makes that safe, otherwise
reported as an unknown outcome.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session, col, func, select, update

from pipeline.config import Settings
from pipeline.db import get_engine
from pipeline.errors import InvalidState, RenderError
from pipeline.issues import delivery_counts, get_issue
from pipeline.models import Delivery, DeliveryStatus, Issue, IssueStatus, utcnow
from pipeline.providers import (
    OutgoingMessage, Outcome, Provider, ProviderConfigError, ProviderUnavailable, SendOutcome, get_provider,
)
from pipeline.render import Recipient, RenderedIssue, personal_values, preflight, render_issue
from subscribers.models import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

#: Set by SIGTERM (see `graceful_stop`): the batch in flight is finished and recorded, no new one starts.
STOP = threading.Event()


def graceful_stop() -> None:
    """SIGTERM ends the send after the batch in flight; the next run continues from the ledger."""

    def _stop(signum: int, _frame: object) -> None:
        log.warning("received %s: finishing the batch in flight, then stopping", signal.Signals(signum).name)
        STOP.set()

    signal.signal(signal.SIGTERM, _stop)


@dataclass
class SendSummary:
    issue_id: int
    audience: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    unknown: int = 0  # left by a dead sender on a provider that cannot dedupe: check before resending
    requeued: int = 0  # left by a dead sender and re-sent safely
    resent_unknown: int = 0  # left by a dead sender mid-request and re-sent anyway (AFTER_CRASH=resend)
    remaining: int = 0  # still pending, or claimed by another live sender
    finished: bool = False
    seconds: float = 0.0
    carried: dict[str, int] = field(default_factory=dict)  # provider name → messages it accepted
    primary: str = ""

    def line(self) -> str:
        parts = [f"issue {self.issue_id}: sent {self.sent}", f"failed {self.failed}", f"suppressed {self.suppressed}"]
        if self.requeued:
            parts.append(f"re-sent after a crash {self.requeued}")
        if self.resent_unknown:
            parts.append(f"{self.resent_unknown} deliveries with unknown outcome re-sent after a crash (a reader may have two copies)")
        if self.unknown:
            parts.append(f"{self.unknown} deliveries with unknown outcome")
        if len(self.carried) > 1 or set(self.carried) - {self.primary}:
            parts.append("carried by " + ", ".join(f"{name} {n}" for name, n in self.carried.items()))
        parts.append("finished" if self.finished else f"{self.remaining} not yet sent")
        return ", ".join(parts) + f" ({self.seconds:.1f}s)"


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _claimer_alive(claimed_by: str | None, expired: bool) -> bool:
    """A claim lives while its lease runs and, on this host, while its process exists."""
    if expired or not claimed_by:
        return False
    host, pid, _ = (claimed_by.split(":") + ["", "", ""])[:3]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_paused(now):
    return sa.or_(col(Subscriber.paused_until).is_(None), col(Subscriber.paused_until) <= now)


class Claim(NamedTuple):
    """One claimed delivery and what the send needs of its reader: plain values, no ORM objects
    (loading tens of thousands of those per batch was a third of a big send)."""

    delivery_id: int
    subscriber_id: int | None  # None: erased since the freeze
    email: str
    name: str | None
    status: SubscriberStatus | None
    paused_until: datetime | None


def _receives(claim: Claim, now: datetime) -> bool:
    return claim.status is SubscriberStatus.confirmed and (claim.paused_until is None or claim.paused_until <= now)


def freeze_audience(session: Session, issue: Issue) -> int:
    """One delivery row per confirmed reader, in one INSERT … SELECT; the unique key keeps it once."""
    already = select(Delivery.id).where(Delivery.issue_id == issue.id, Delivery.subscriber_id == Subscriber.id)
    source = select(
        sa.literal(issue.id), Subscriber.id, Subscriber.email, sa.literal(DeliveryStatus.pending.value), sa.literal(0)
    ).where(Subscriber.status == SubscriberStatus.confirmed, _not_paused(utcnow()), ~sa.exists(already))
    insert = sa.insert(Delivery).from_select(["issue_id", "subscriber_id", "email", "status", "attempts"], source)
    session.exec(insert)
    return session.exec(select(func.count()).where(Delivery.issue_id == issue.id)).one()


def start_sending(session: Session, issue: Issue) -> int:
    """approved → sending, with the audience frozen in the same transaction."""
    if issue.status is IssueStatus.draft:
        raise InvalidState(f"issue {issue.id} is a draft: approve it first (`verdicts issue approve {issue.id}`)")
    if issue.status is IssueStatus.approved:
        try:
            audience = freeze_audience(session, issue)
        except sa.exc.IntegrityError:  # another sender froze it at the same moment: join that send
            session.rollback()
            session.refresh(issue)
            return start_sending(session, issue)
        if audience == 0:
            raise InvalidState("there are no confirmed subscribers: nothing to send (add some with `verdicts subscribers add`)")
        moved = session.exec(
            update(Issue).where(Issue.id == issue.id, Issue.status == IssueStatus.approved)
            .values(status=IssueStatus.sending, send_started_at=utcnow())
        ).rowcount
        if not moved:  # another sender started it first; join that send instead
            session.rollback()
        session.commit()
        session.refresh(issue)
        return audience
    return session.exec(select(func.count()).where(Delivery.issue_id == issue.id)).one()


def _recipients(session: Session, issue_id: int, statuses: tuple[DeliveryStatus, ...], batch: int = 1000) -> Iterator[Recipient]:
    """Keyset pagination over the ledger: memory stays flat whatever the list size."""
    last = 0
    while True:
        rows = session.exec(
            select(Delivery.id, Delivery.subscriber_id, Delivery.email, Subscriber.name)
            .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue_id, col(Delivery.status).in_(statuses), Delivery.id > last)
            .order_by(col(Delivery.id)).limit(batch)
        ).all()
        if not rows:
            return
        for _, subscriber_id, email, name in rows:
            yield Recipient(subscriber_id, email, name)
        last = rows[-1][0]


def check_copies(session: Session, rendered: RenderedIssue, settings: Settings) -> None:
    """Preflight against the bounds of what is left to send: one query, not a pass over the list."""
    waiting = (DeliveryStatus.pending, DeliveryStatus.sending)
    longest, largest = session.exec(
        select(func.max(func.length(Subscriber.name)), func.max(Delivery.subscriber_id))
        .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
        .where(Delivery.issue_id == rendered.issue_id, col(Delivery.status).in_(waiting))
    ).one()
    preflight(rendered, _recipients(session, rendered.issue_id, waiting), settings,
              longest_name=max(longest or 0, len("there")), largest_id=largest or 0)


def recover_stale_claims(session: Session, issue_id: int, settings: Settings, provider: Provider) -> tuple[int, int]:
    """Resolve rows claimed by senders that died: (re-sent safely, re-sent with an unknown outcome).

    Where the provider dedupes (the outbox; Resend, whose replayed batch carries the same
    Idempotency-Key) they simply go back to the queue. Elsewhere the first attempt may have been
    delivered: with ``AFTER_CRASH=resend`` (the default: every reader gets the issue) they go back
    too and are reported as unknown outcomes re-sent, at most the batches in flight at the crash;
    with ``hold`` they are marked unknown and never sent again.
    """
    horizon = utcnow() - timedelta(seconds=settings.claim_lease_seconds)
    claims = session.exec(
        select(Delivery.id, Delivery.claimed_by, Delivery.claimed_at)
        .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.sending)
    ).all()
    dead = [i for i, by, at in claims if not _claimer_alive(by, at is None or at < horizon)]
    if not dead:
        return 0, 0
    if provider.idempotent:
        values = {"status": DeliveryStatus.pending, "claimed_by": None}
    elif settings.after_crash == "resend":
        values = {"status": DeliveryStatus.pending, "claimed_by": None,
                  "error": "re-sent after a crash: the first attempt may have been delivered too"}
    else:
        values = {"status": DeliveryStatus.unknown, "error": "the sender stopped during the request; the outcome is unknown"}
    session.exec(update(Delivery).where(col(Delivery.id).in_(dead), Delivery.status == DeliveryStatus.sending).values(**values))
    session.commit()
    if provider.idempotent:
        return len(dead), 0
    return 0, len(dead) if settings.after_crash == "resend" else 0


def claim_batch(session: Session, issue_id: int, worker: str, size: int) -> list[Claim]:
    """Take up to ``size`` pending rows for this worker in one statement: concurrent senders never
    get the same row. PostgreSQL skips rows another sender is claiming (SKIP LOCKED); SQLite
    runs one writer at a time, so senders take turns."""
    pending = (
        select(Delivery.id).where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.pending)
        .order_by(col(Delivery.id)).limit(size)
    )
    if session.get_bind().dialect.name == "postgresql":
        pending = pending.with_for_update(skip_locked=True)
    # A materialised CTE runs the LIMIT once: as a plain IN (subquery) PostgreSQL may run it again
    # per row and, skipping its own locks, claim far more than `size` rows (seen: all of them).
    batch = pending.cte("batch").prefix_with("MATERIALIZED")
    claimed = session.exec(
        update(Delivery).where(col(Delivery.id).in_(select(batch.c.id)), Delivery.status == DeliveryStatus.pending)
        .values(status=DeliveryStatus.sending, claimed_by=worker, claimed_at=utcnow(), attempts=Delivery.attempts + 1)
        .returning(Delivery.id)
    ).all()
    session.commit()
    if not claimed:
        return []
    return [Claim(*row) for row in session.exec(
        # Outer join: a reader erased since the freeze has no row, and must still be settled.
        select(Delivery.id, Delivery.subscriber_id, Delivery.email, Subscriber.name, Subscriber.status, Subscriber.paused_until)
        .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id, isouter=True)
        .where(Delivery.claimed_by == worker, Delivery.status == DeliveryStatus.sending).order_by(col(Delivery.id))
    ).all()]


def compliance_headers(settings: Settings, unsubscribe_url: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers every newsletter message carries."""
    token = unsubscribe_url.rsplit("/", 1)[-1]
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>, <mailto:{settings.unsubscribe_mailto}?subject=unsubscribe-{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"{settings.from_name} <{settings.list_id}>",
    }


def campaign_key(issue: Issue) -> str:
    return f"{issue.id}-{issue.week}"


def build_message(rendered: RenderedIssue, recipient: Recipient, settings: Settings, *, delivery_id: int | None, campaign: str, subject_prefix: str = "") -> OutgoingMessage:
    values = personal_values(settings, rendered, recipient)
    domain = settings.from_email.rpartition("@")[2]
    ref = delivery_id if delivery_id is not None else f"test-{secrets.token_hex(6)}"
    headers = compliance_headers(settings, values["unsubscribe_url"])
    if delivery_id is not None:
        headers["X-Verdicts-Delivery"] = str(delivery_id)
    return OutgoingMessage(
        to_email=recipient.email, to_name=recipient.name, message_id=f"<{campaign}.{ref}@{domain}>", delivery_id=delivery_id,
        body=rendered.body, values=values, headers=headers, subject_prefix=subject_prefix,
    )


def send_test_copies(session: Session, issue: Issue, settings: Settings, addresses: list[str]) -> list[tuple[str, SendOutcome]]:
    """``[TEST]`` copies through the configured provider, for the CLI and the editor alike:
    no delivery row, so never counted; links act for nobody (subscriber 0)."""
    rendered = render_issue(session, issue, settings)
    campaign = campaign_key(issue)
    messages = [build_message(rendered, Recipient(0, a, "Editor"), settings, delivery_id=None, campaign=campaign, subject_prefix="[TEST] ")
                for a in addresses]
    provider = get_provider(settings)
    try:
        outcomes = provider.send_batch(messages, campaign=campaign)
    finally:
        provider.close()
    return list(zip(addresses, outcomes))


class _Pacer:
    """Keeps the average rate at or below ``rate`` messages per second (0 = unpaced)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self, messages: int) -> None:
        if not self.interval:
            return
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at, time.monotonic()) + messages * self.interval


_ROW_STATUS = {Outcome.sent: DeliveryStatus.sent, Outcome.failed: DeliveryStatus.failed,
               Outcome.unknown: DeliveryStatus.unknown, Outcome.deferred: DeliveryStatus.pending}
_T = Delivery.__table__.c
#: One statement, many parameter sets (executemany): every outcome of a batch in one round trip.
_RECORD = sa.update(Delivery.__table__).where(_T.id == sa.bindparam("row_id")).values(
    status=sa.bindparam("new_status"), claimed_by=sa.bindparam("by"), provider=sa.bindparam("via"),
    error=sa.bindparam("why"), sent_at=sa.bindparam("at"), provider_message_id=sa.bindparam("pmid"),
)


def _record(session: Session, batch: list[Claim], outcomes: list[SendOutcome], provider: str, worker: str) -> dict[Outcome, int]:
    """Every outcome in one bulk update; deferred rows go back to the queue, unclaimed."""
    now = utcnow()
    rows, counts = [], dict.fromkeys(Outcome, 0)
    for claim, outcome in zip(batch, outcomes, strict=True):
        counts[outcome.state] += 1
        sent, deferred = outcome.state is Outcome.sent, outcome.state is Outcome.deferred
        rows.append({
            # The sender stays on the row (who sent it); a deferred row is free for anyone again.
            "row_id": claim.delivery_id, "new_status": _ROW_STATUS[outcome.state], "by": None if deferred else worker,
            "via": None if deferred else provider, "why": outcome.error and outcome.error[:1000],
            "at": now if sent else None, "pmid": outcome.provider_message_id if sent else None,
        })
    if rows:
        session.connection().execute(_RECORD, rows)
    session.commit()
    return counts


def _release(session: Session, worker: str, resend_safe: bool) -> None:
    """On an unexpected stop, our claims go back to the queue where re-sending is safe, else to unknown."""
    status = DeliveryStatus.pending if resend_safe else DeliveryStatus.unknown
    session.rollback()
    session.exec(update(Delivery).where(Delivery.claimed_by == worker, Delivery.status == DeliveryStatus.sending).values(status=status))
    session.commit()


class _Carrier:
    """The provider carrying the send, and the fallback that takes over when it keeps failing.

    Only deferred messages (the provider answered "not now", or never got the request) move
    to the fallback; unknown outcomes never do, so no reader gets a second copy.
    """

    def __init__(self, primary: Provider, fallback: Provider | None, window: float) -> None:
        self.current, self.fallback, self.window = primary, fallback, window
        self.failing_since: float | None = None

    def succeeded(self) -> None:
        self.failing_since = None

    def keep_going(self, error: str) -> bool:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since < self.window:
            return True
        if self.fallback is not None and self.current is not self.fallback:
            log.warning("%s kept failing for %.0fs (%s): the rest of the send goes through %s", self.current.name, now - self.failing_since, error, self.fallback.name)
            self.current, self.failing_since = self.fallback, None
            return True
        return False


def send_issue(settings: Settings, issue_id: int, provider: Provider, on_progress: ProgressFn | None = None,
               fallback: Provider | None = None, *, checked: bool = False) -> SendSummary:
    """Send (or resume sending) one issue to its frozen audience; safe to run again at any time."""
    started = time.monotonic()
    summary = SendSummary(issue_id, primary=provider.name)
    worker = new_worker_id()
    carrier = _Carrier(provider, fallback, settings.failover_after_seconds)
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        issue = get_issue(session, issue_id)
        if issue.status is IssueStatus.sent:
            summary.audience = start_sending(session, issue)
            summary.finished = True
            return summary
        # Render and lint before the status moves: a refused issue stays approved, nothing frozen.
        rendered = render_issue(session, issue, settings)
        if rendered.lint.errors:
            raise RenderError(f"issue {issue.id} fails lint: " + "; ".join(rendered.lint.errors))
        summary.audience = start_sending(session, issue)
        campaign = campaign_key(issue)
        if not checked:  # parallel workers: the parent checked every copy once
            check_copies(session, rendered, settings)
        summary.requeued, summary.resent_unknown = recover_stale_claims(session, issue.id, settings, provider)
        done = session.exec(select(func.count()).where(Delivery.issue_id == issue.id, col(Delivery.status).not_in([DeliveryStatus.pending, DeliveryStatus.sending]))).one()
        pacer = _Pacer(settings.rate_per_second)
        while not STOP.is_set() and (batch := claim_batch(session, issue.id, worker, min(settings.batch_size or carrier.current.max_batch, carrier.current.max_batch))):
            settled, trouble = _send_one_batch(session, batch, rendered, settings, carrier.current, campaign, pacer, summary, worker)
            done += settled
            if on_progress:
                on_progress(done, summary.audience)
            if trouble is None:
                carrier.succeeded()
            elif trouble.config_problem:
                raise ProviderConfigError(f"{carrier.current.name}: {trouble.error}")
            elif not carrier.keep_going(trouble.error or "no answer"):
                _finish(session, issue, summary)
                raise ProviderUnavailable(f"{carrier.current.name} is unavailable ({trouble.error}); {summary.remaining} messages wait: run the send again later")
        _finish(session, issue, summary)
    summary.seconds = time.monotonic() - started
    log.info(summary.line())
    return summary


def _send_one_batch(session: Session, batch: list[Claim], rendered: RenderedIssue, settings: Settings,
                    provider: Provider, campaign: str, pacer: _Pacer, summary: SendSummary, worker: str) -> tuple[int, SendOutcome | None]:
    """Returns how many rows got an outcome, and the first sign of a failing provider: a deferral
    (it could not take some), else an unknown outcome (it stopped answering)."""
    # The suppression check runs right before the batch leaves: a reader who left since the freeze gets nothing.
    now = utcnow()
    gone = [c.delivery_id for c in batch if not _receives(c, now)]
    if gone:
        session.exec(update(Delivery).where(col(Delivery.id).in_(gone)).values(status=DeliveryStatus.suppressed))
        session.commit()
        summary.suppressed += len(gone)
        batch = [c for c in batch if _receives(c, now)]
    try:  # nothing has left yet: a stop here puts the batch back, whatever the provider
        messages = [build_message(rendered, Recipient(c.subscriber_id, c.email, c.name), settings, delivery_id=c.delivery_id, campaign=campaign)
                    for c in batch]
        pacer.wait(len(messages))
    except BaseException:
        _release(session, worker, resend_safe=True)
        raise
    try:
        outcomes = provider.send_batch(messages, campaign=campaign) if messages else []
        counts = _record(session, batch, outcomes, provider.name, worker)
    except BaseException:  # the request may have left: only an idempotent provider may send it again
        _release(session, worker, resend_safe=provider.idempotent)
        raise
    summary.sent += counts[Outcome.sent]
    summary.failed += counts[Outcome.failed]
    if counts[Outcome.sent]:
        summary.carried[provider.name] = summary.carried.get(provider.name, 0) + counts[Outcome.sent]
    trouble = next((o for o in outcomes if o.state is Outcome.deferred), None) or next((o for o in outcomes if o.state is Outcome.unknown), None)
    return len(gone) + len(batch) - counts[Outcome.deferred], trouble


def _finish(session: Session, issue: Issue, summary: SendSummary) -> None:
    counts = delivery_counts(session, issue.id)
    summary.remaining = counts["pending"] + counts["sending"]
    # Unknown outcomes stay in the report of every run until someone checks them.
    summary.unknown = counts["unknown"]
    if summary.remaining == 0:
        session.exec(update(Issue).where(Issue.id == issue.id, Issue.status == IssueStatus.sending).values(status=IssueStatus.sent, sent_at=utcnow()))
        session.commit()
        summary.finished = True
