"""The delivery ledger: one row per reader per issue, and every state change it goes through.

pending → sending (claimed by one sender) → sent | failed | unknown | suppressed, or back to
pending (deferred). Each change is one short statement, safe against other senders: claims
skip rows another sender holds, and a dead sender's claims are resolved by the next run.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlmodel import Session, col, func, select, update

from pipeline.config import Settings
from pipeline.delivery.providers import Outcome, Provider, SendOutcome
from pipeline.errors import InvalidState
from pipeline.store import audit
from pipeline.store.models import Delivery, DeliveryStatus, Issue, IssueStatus, core_table, saved_id, utcnow
from subscribers.models import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)


_DELIVERIES, _SUBSCRIBERS = core_table(Delivery), core_table(Subscriber)
_T, _S = _DELIVERIES.c, _SUBSCRIBERS.c


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


def dead_claims(claims: Sequence[tuple[int | None, str | None, datetime | None]], settings: Settings) -> list[int]:
    """The ids of ``(id, claimed_by, claimed_at)`` claims whose sender died: its lease ran out, or its process
    on this host is gone (the issue's deliveries, and the welcome emails)."""
    horizon = utcnow() - timedelta(seconds=settings.claim_lease_seconds)
    return [i for i, by, at in claims if i is not None and not _claimer_alive(by, at is None or at < horizon)]


def _not_paused(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(_S.paused_until.is_(None), _S.paused_until <= now)


class Claim(Protocol):
    """One claimed delivery and what the send needs of its reader: a plain result row (no ORM
    object, not even a tuple of our own: building those was a third, then a tenth, of a big send)."""

    delivery_id: int
    subscriber_id: int | None  # None: erased since the freeze
    email: str
    name: str | None
    #: Still confirmed and not pausing, as of the claim: a reader who left since the freeze gets nothing.
    receives: bool
    #: The reader's interests as stored (JSON text) and "only my interests": their line-up (``content.lineups``).
    interests: str | None
    only_interests: bool | None


def freeze_audience(session: Session, issue_id: int) -> int:
    """One delivery row per confirmed reader, in one INSERT … SELECT; the unique key keeps it once."""
    already = sa.select(_T.id).where(_T.issue_id == issue_id, _T.subscriber_id == _S.id)
    source = sa.select(
        sa.literal(issue_id), _S.id, _S.email, sa.literal(DeliveryStatus.pending.value), sa.literal(0)
    ).where(_S.status == SubscriberStatus.confirmed, _not_paused(utcnow()), ~sa.exists(already))
    insert = sa.insert(_DELIVERIES).from_select(["issue_id", "subscriber_id", "email", "status", "attempts"], source)
    session.exec(insert)
    return audience(session, issue_id)


def audience(session: Session, issue_id: int) -> int:
    """Readers the issue was frozen for: one delivery row each."""
    return session.exec(select(func.count()).where(col(Delivery.issue_id) == issue_id)).one()


class IssueChanged(InvalidState):
    """An editor changed the issue (unapproved, edited, approved again) after it was rendered for this send."""


def start_sending(
    session: Session, issue: Issue, rendered_revision: int | None = None, *, actor: str | None = None
) -> int:
    """approved → sending, with the audience frozen in the same transaction; paused → sending. The move is
    recorded in the audit trail as ``actor``'s (``issue.send``, ``issue.resume``); None only in tests.

    Given the revision the send rendered, only that one starts: the words readers get are the words approved."""
    issue_id = saved_id(issue)
    if issue.status is IssueStatus.paused:
        reason = issue.paused_reason
        resumed = session.exec(
            update(Issue)
            .where(col(Issue.id) == issue_id, col(Issue.status) == IssueStatus.paused)
            .values(status=IssueStatus.sending, paused_reason=None)
        ).rowcount
        if resumed and actor:
            audit.record(session, actor, "issue.resume", issue=issue, detail={"paused": reason})
        session.commit()
        session.refresh(issue)
    if issue.status is IssueStatus.draft:
        raise InvalidState(f"issue {issue.id} is a draft: approve it first (`verdicts issue approve {issue.id}`)")
    if issue.status is IssueStatus.approved:
        try:
            frozen = freeze_audience(session, issue_id)
        except sa.exc.IntegrityError:  # another sender froze it at the same moment: join that send
            session.rollback()
            session.refresh(issue)
            return start_sending(session, issue, rendered_revision, actor=actor)
        if frozen == 0:
            raise InvalidState(
                "there are no confirmed subscribers: nothing to send (add some with `verdicts subscribers add`)"
            )
        rendered = col(Issue.revision) == rendered_revision if rendered_revision is not None else sa.true()
        moved = session.exec(
            update(Issue)
            .where(col(Issue.id) == issue_id, col(Issue.status) == IssueStatus.approved, rendered)
            .values(status=IssueStatus.sending, send_started_at=utcnow())
        ).rowcount
        if not moved:
            session.rollback()
            session.refresh(issue)
            if issue.status is IssueStatus.approved:
                raise IssueChanged(
                    f"issue {issue.id} was changed and approved again after it was rendered for this send"
                )
            if issue.status is IssueStatus.draft:
                raise InvalidState(
                    f"issue {issue.id} went back to a draft while its send was starting: nothing was sent"
                )
            return audience(session, issue_id)  # another sender started it first: join that send
        if actor:
            audit.record(session, actor, "issue.send", issue=issue, detail={"audience": frozen})
        session.commit()
        session.refresh(issue)
        return frozen
    return audience(session, issue_id)


def pause(session: Session, issue: Issue, reason: str) -> bool:
    """sending → paused with the reason; False if the send finished or was paused meanwhile."""
    moved = session.exec(
        update(Issue)
        .where(col(Issue.id) == issue.id, col(Issue.status) == IssueStatus.sending)
        .values(status=IssueStatus.paused, paused_reason=reason[:1000])
    ).rowcount
    session.commit()
    session.refresh(issue)
    return bool(moved)


def recover_stale_claims(session: Session, issue_id: int, settings: Settings, provider: Provider) -> tuple[int, int]:
    """Resolve rows claimed by senders that died: (re-sent safely, re-sent with an unknown outcome).

    Where the provider dedupes (the outbox; Resend, whose replayed batch carries the same
    Idempotency-Key) they simply go back to the queue. Elsewhere the first attempt may have been
    delivered: with ``AFTER_CRASH=resend`` (the default: every reader gets the issue) they go back
    too and are reported as unknown outcomes re-sent, at most the batches in flight at the crash;
    with ``hold`` they are marked unknown and never sent again.
    """
    claims = session.exec(
        select(col(Delivery.id), Delivery.claimed_by, Delivery.claimed_at).where(
            col(Delivery.issue_id) == issue_id, col(Delivery.status) == DeliveryStatus.sending
        )
    ).all()
    dead = dead_claims(claims, settings)
    if not dead:
        return 0, 0
    values: dict[str, Any]
    if provider.idempotent:
        values = {"status": DeliveryStatus.pending, "claimed_by": None}
    elif settings.after_crash == "resend":
        values = {
            "status": DeliveryStatus.pending,
            "claimed_by": None,
            "error": "re-sent after a crash: the first attempt may have been delivered too",
        }
    else:
        values = {
            "status": DeliveryStatus.unknown,
            "error": "the sender stopped during the request; the outcome is unknown",
        }
    # Dead senders with big batches can hold more rows than one statement lists.
    for start in range(0, len(dead), _IN_LIMIT):
        session.exec(
            update(Delivery)
            .where(
                col(Delivery.id).in_(dead[start : start + _IN_LIMIT]), col(Delivery.status) == DeliveryStatus.sending
            )
            .values(**values)
        )
    session.commit()
    log.info(
        "issue %s: %d deliveries a stopped sender held are now %s",
        issue_id,
        len(dead),
        "unknown" if values["status"] is DeliveryStatus.unknown else "waiting to be sent again",
        extra={"issue_id": issue_id, "delivery_ids": dead},
    )
    if provider.idempotent:
        return len(dead), 0
    return 0, len(dead) if settings.after_crash == "resend" else 0


def suppress(session: Session, ids: list[int]) -> None:
    """Readers who left (or paused) since the freeze: their rows are settled without a message."""
    session.connection().execute(sa.update(_DELIVERIES).where(_T.id.in_(ids)).values(status=DeliveryStatus.suppressed))
    session.commit()


def _still_sending(issue_id: int) -> sa.ColumnElement[bool]:
    """An issue an admin stopped (paused) from the editor: every sender's next claim finds nothing."""
    issues = core_table(Issue).c
    return sa.exists().where(issues.id == issue_id, issues.status == IssueStatus.sending.value)


def claim_batch(session: Session, issue_id: int, worker: str, size: int, at: datetime | None = None) -> list[Claim]:
    """Take up to ``size`` pending rows for this worker in one statement: concurrent senders never
    get the same row. PostgreSQL skips rows another sender is claiming (SKIP LOCKED); SQLite
    runs one writer at a time, so senders take turns.

    ``at`` names the claim: run again with the same one after a lost connection, it also returns
    the rows the first attempt claimed if that commit went through."""
    pending = (
        select(col(Delivery.id))
        .where(col(Delivery.issue_id) == issue_id, col(Delivery.status) == DeliveryStatus.pending)
        .order_by(col(Delivery.id))
        .limit(size)
    )
    if session.get_bind().dialect.name == "postgresql":
        pending = pending.with_for_update(skip_locked=True)
    # A materialised CTE runs the LIMIT once: as a plain IN (subquery) PostgreSQL may run it again
    # per row and, skipping its own locks, claim far more than `size` rows (seen: all of them).
    batch = pending.cte("batch").prefix_with("MATERIALIZED")
    # Core, not ORM: the session holds no delivery objects to synchronise (that bookkeeping cost a
    # tenth of a big send).
    now = at or utcnow()
    claimed = (
        session.connection()
        .execute(
            sa.update(_DELIVERIES)
            .where(_T.id.in_(sa.select(batch.c.id)), _T.status == DeliveryStatus.pending, _still_sending(issue_id))
            .values(status=DeliveryStatus.sending, claimed_by=worker, claimed_at=now, attempts=_T.attempts + 1)
        )
        .rowcount
    )
    session.commit()
    if not claimed and at is None:
        return []
    # Decided in SQL, not per row in Python (converting each status and date was a tenth of a claim).
    receives = sa.and_(_S.status == SubscriberStatus.confirmed, _not_paused(now)).label("receives")
    rows = (
        session.connection()
        .execute(
            # Outer join: a reader erased since the freeze has no row (receives is NULL), and must still be settled.
            sa.select(
                _T.id.label("delivery_id"),
                _T.subscriber_id,
                _T.email,
                _S.name,
                sa.func.coalesce(receives, False).label("receives"),
                sa.cast(_S.interests, sa.Text).label("interests"),
                _S.only_interests,
            )
            .select_from(_DELIVERIES.outerjoin(_SUBSCRIBERS, _S.id == _T.subscriber_id))
            # Exactly the rows of this claim (this sender's previous batch may still be with the provider);
            # issue and status first, so the index narrows it to the rows being sent right now.
            .where(
                _T.issue_id == issue_id,
                _T.status == DeliveryStatus.sending,
                _T.claimed_by == worker,
                _T.claimed_at == now,
            )
            .order_by(_T.id)
        )
        .all()
    )
    return cast("list[Claim]", rows)  # rows with exactly Claim's columns


_ROW_STATUS = {
    Outcome.sent: DeliveryStatus.sent,
    Outcome.failed: DeliveryStatus.failed,
    Outcome.unknown: DeliveryStatus.unknown,
    Outcome.deferred: DeliveryStatus.pending,
}


_OUTCOME: dict[str, sa.BindParameter[Any]] = {
    "status": sa.bindparam("new_status"),
    "claimed_by": sa.bindparam("by"),
    "provider": sa.bindparam("via"),
    "error": sa.bindparam("why"),
    "sent_at": sa.bindparam("at"),
    "provider_message_id": sa.bindparam("pmid"),
}


#: One outcome shared by many rows (a merged request: one provider id for all its readers).
_RECORD_MANY = sa.update(_DELIVERIES).where(_T.id.in_(sa.bindparam("row_ids", expanding=True))).values(**_OUTCOME)


#: A per-message provider's id for each row; run through the driver's own executemany.
_MESSAGE_ID = (
    sa.update(_DELIVERIES).where(_T.id == sa.bindparam("row_id")).values(provider_message_id=sa.bindparam("pmid"))
)


_IN_LIMIT = 1000  # ids per IN list: far below SQLite's and PostgreSQL's parameter limits

#: An address inside a provider's error ("Found inactive addresses: ada@example.com."). The row
#: names its reader already; kept in the text, it made every refusal a reason of its own, so 24,000
#: readers Postmark refused for one cause were listed as single, unrelated failures.
_ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


def _reason(error: str) -> str:
    return _ADDRESS.sub("<address>", error)[:1000]


def record_outcomes(
    session: Session, batch: list[Claim], outcomes: list[SendOutcome], provider: str, worker: str
) -> dict[Outcome, int]:
    """Every outcome of a batch, grouped: rows sharing an outcome are one UPDATE … IN each, and
    ids the provider gave each message its own are set in one executemany. Deferred rows go
    back to the queue, unclaimed."""
    now = utcnow()
    rows = []
    counts = dict.fromkeys(Outcome, 0)
    for claim, outcome in zip(batch, outcomes, strict=True):
        counts[outcome.state] += 1
        sent, deferred = outcome.state is Outcome.sent, outcome.state is Outcome.deferred
        # The sender stays on the row (who sent it); a deferred row is free for anyone again.
        key = (
            _ROW_STATUS[outcome.state],
            None if deferred else worker,
            None if deferred else provider,
            outcome.error and _reason(outcome.error),
            now if sent else None,
        )
        rows.append((key, claim.delivery_id, outcome.provider_message_id if sent else None))
    shared = Counter(pmid for _, _, pmid in rows)
    groups: dict[tuple[object, ...], list[int]] = {}
    own: list[tuple[str, int]] = []
    for key, row_id, pmid in rows:
        if pmid is not None and shared[pmid] == 1:
            own.append((pmid, row_id))
            pmid = None
        groups.setdefault((*key, pmid), []).append(row_id)
    conn = session.connection()
    names = ("new_status", "by", "via", "why", "at", "pmid")
    for shared_outcome, ids in groups.items():
        for start in range(0, len(ids), _IN_LIMIT):
            values = dict(zip(names, shared_outcome, strict=True))
            conn.execute(_RECORD_MANY, {"row_ids": ids[start : start + _IN_LIMIT], **values})
    if own:
        _set_message_ids(conn, own)
    session.commit()
    return counts


@lru_cache(maxsize=4)
def _message_id_statement(dialect: sa.Dialect) -> sa.sql.compiler.SQLCompiler:
    """Compiled once per dialect, not once per batch."""
    return _MESSAGE_ID.compile(dialect=dialect)


def _set_message_ids(conn: sa.Connection, pairs: list[tuple[str, int]]) -> None:
    """``(provider id, row id)`` pairs in one executemany of the driver's own: SQLAlchemy builds and
    converts every row's parameters in Python, a third of recording a per-message provider's
    batch, and these are a plain string and integer that need no converting."""
    compiled = _message_id_statement(conn.dialect)
    params: Sequence[dict[str, object]] | Sequence[tuple[object, ...]]
    if not compiled.positional:
        params = [{"pmid": pmid, "row_id": row_id} for pmid, row_id in pairs]
    else:
        params = pairs if compiled.positiontup == ["pmid", "row_id"] else [(row_id, pmid) for pmid, row_id in pairs]
    conn.exec_driver_sql(compiled.string, params)


def release(session: Session, ids: list[int], resend_safe: bool) -> None:
    """Claimed rows whose send stopped unexpectedly: back to the queue where re-sending is safe
    (they never left, or the provider dedupes), else to unknown."""
    status = DeliveryStatus.pending if resend_safe else DeliveryStatus.unknown
    if not resend_safe:
        log.warning(
            "%d deliveries were with the provider when the send stopped: their outcome is unknown",
            len(ids),
            extra={"delivery_ids": ids},
        )
    session.rollback()
    for start in range(0, len(ids), _IN_LIMIT):
        session.connection().execute(
            sa.update(_DELIVERIES)
            .where(_T.id.in_(ids[start : start + _IN_LIMIT]), _T.status == DeliveryStatus.sending)
            .values(
                status=status,
                claimed_by=None if resend_safe else _T.claimed_by,
                error=None if resend_safe else STOPPED_IN_FLIGHT,
            )
        )
    session.commit()


#: Why a row is unknown when its send was stopped (Ctrl-C twice, a kill) while the provider had it.
STOPPED_IN_FLIGHT = "the send was stopped while the provider had this message: it may have been accepted"
