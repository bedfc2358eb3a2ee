"""Events for the site, on a queue in the database: each one is written in the transaction of the change it tells of
(a confirmation, an unsubscribe, a vote, the end of a send), so a crash never loses one and a change that rolls
back sends none. ``pipeline.delivery.site_webhooks`` sends them.

The queue is drained in creation order by one sender at a time, whatever the number of processes: a sender claims
the oldest pending event only, with a conditional UPDATE that moves its ``next_attempt_at`` past the request (a
lease: a sender that dies lets it lapse, and the event goes again). An event that fails holds the ones after it
until it is delivered or given up: the site never hears of an unsubscribe before the confirmation it undoes.
Delivery is at least once (a sender that dies after the site's 200 but before recording it sends it again): the
site dedupes by the envelope's ``id``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, func, select, update

from pipeline.config import Settings, get_settings
from pipeline.store.models import (
    Comparison,
    Issue,
    IssueItem,
    WebhookEvent,
    WebhookEventStatus,
    utcnow,
)

#: Longer than a request may take (``site_webhooks.TIMEOUT``): a live sender's claim never lapses under it.
CLAIM_SECONDS = 120.0
#: The longest wait between two attempts.
MAX_WAIT_SECONDS = 3600.0


def enqueue(session: Session, kind: str, data: dict[str, Any], settings: Settings | None = None) -> None:
    """Queue one event, in the caller's transaction. Nothing is queued when no site listens or the event is not
    one WEBHOOK_EVENTS names (the settings of this process: the hooks sit deep in rules that take none)."""
    if kind not in (settings or get_settings()).webhook_event_types:
        return
    now = utcnow()
    session.add(WebhookEvent(uid=str(uuid.uuid4()), type=kind, payload=data, created_at=now, next_attempt_at=now))


def address_hash(address: str, settings: Settings | None = None) -> str | None:
    """HMAC-SHA256 of the address under the webhook's secret: the site, which has the secret, can match its own
    members' addresses to it; a body read by anyone else names nobody."""
    site = (settings or get_settings()).site_webhook
    if site is None:
        return None
    return hmac.new(site[1].get_secret_value().encode(), address.encode(), hashlib.sha256).hexdigest()


def subscriber_event(session: Session, kind: str, subscriber_id: int, address: str, **facts: object) -> None:
    """``subscriber.confirmed`` or ``subscriber.unsubscribed``: the reader's id and keyed address hash, never the
    address or name (the site needs to know who changed, not to mail them)."""
    settings = get_settings()
    if kind in settings.webhook_event_types:
        data = {"subscriber_id": subscriber_id, "address_hash": address_hash(address, settings), **facts}
        enqueue(session, kind, data, settings)


def issue_sent(session: Session, issue_id: int, sent: int) -> None:
    """``issue.sent``, in the transaction that marks the issue sent: its week, subject, web version, comparisons
    and how many readers it reached."""
    settings = get_settings()
    if "issue.sent" not in settings.webhook_event_types:
        return
    issue = session.get(Issue, issue_id)
    if issue is None:
        return
    slugs = session.exec(
        select(Comparison.slug)
        .join(IssueItem, col(IssueItem.comparison_id) == Comparison.id)
        .where(IssueItem.issue_id == issue_id)
        .order_by(col(IssueItem.position))
    ).all()
    data = {
        "issue_id": issue_id,
        "week": issue.week,
        "subject": issue.subject,
        "url": f"{settings.base_url}/issues/{issue.week}",
        "comparisons": list(slugs),
        "sent": sent,
        "sent_at": utcnow().isoformat(),
    }
    enqueue(session, "issue.sent", data, settings)


def retry_wait(attempts: int, first: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling from ``first`` up to an hour, with
    jitter in the upper half (many sites' events do not come back together, and each wait is at least the last)."""
    ceiling = min(MAX_WAIT_SECONDS, first * 2.0 ** max(attempts - 1, 0))
    return ceiling / 2 + rng() * ceiling / 2


def claim_next(session: Session, now: datetime | None = None) -> WebhookEvent | None:
    """The oldest pending event, if it is due and no other sender holds it; committed, so the claim holds."""
    now = now or utcnow()
    head = session.exec(
        select(WebhookEvent).where(WebhookEvent.status == WebhookEventStatus.pending).order_by(col(WebhookEvent.id))
    ).first()
    if head is None or (head.next_attempt_at is not None and head.next_attempt_at > now):
        return None
    attempts = head.attempts
    moved = session.exec(
        update(WebhookEvent)
        .where(
            col(WebhookEvent.id) == head.id,
            col(WebhookEvent.status) == WebhookEventStatus.pending,
            col(WebhookEvent.attempts) == attempts,  # nobody claimed it since it was read
        )
        .values(next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS), attempts=attempts + 1)
    ).rowcount
    session.commit()
    if not moved:
        return None
    head.attempts = attempts + 1  # what this claim wrote, whatever the session made of the UPDATE
    return head


def settle(
    session: Session,
    event: WebhookEvent,
    status: int | None,
    error: str | None,
    settings: Settings,
    now: datetime | None = None,
) -> WebhookEventStatus:
    """Record one attempt: delivered, or due again after ``retry_wait``, or failed once WEBHOOK_GIVE_UP_HOURS
    have passed since the event happened."""
    now = now or utcnow()
    values: dict[str, Any] = {"last_status": status, "last_error": error and error[:1000]}
    if error is None:
        values |= {"status": WebhookEventStatus.delivered, "delivered_at": now, "next_attempt_at": None}
    elif now - event.created_at >= timedelta(hours=settings.webhook_give_up_hours):
        values |= {"status": WebhookEventStatus.failed, "next_attempt_at": None}
    else:
        wait = retry_wait(event.attempts, settings.webhook_retry_seconds)
        values |= {"next_attempt_at": now + timedelta(seconds=wait)}
    session.exec(
        update(WebhookEvent)
        .where(col(WebhookEvent.id) == event.id, col(WebhookEvent.status) == WebhookEventStatus.pending)
        .values(**values)
    )
    session.commit()
    return WebhookEventStatus(values.get("status", WebhookEventStatus.pending))


def recent_events(session: Session, limit: int = 100, status: WebhookEventStatus | None = None) -> list[WebhookEvent]:
    """The delivery log, newest first."""
    query = select(WebhookEvent).order_by(col(WebhookEvent.id).desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    return list(session.exec(query))


def retry_now(session: Session, event_id: int) -> bool:
    """A failed event back on the queue, due now (at its place in creation order: it goes before later ones).
    Only a failed one: a pending one may be in a sender's hands, and a second send would race it."""
    moved = session.exec(
        update(WebhookEvent)
        .where(col(WebhookEvent.id) == event_id, col(WebhookEvent.status) == WebhookEventStatus.failed)
        .values(status=WebhookEventStatus.pending, next_attempt_at=utcnow())
    ).rowcount
    return bool(moved)


def queue_counts(session: Session) -> dict[str, int]:
    """Events per status, every status named: the log's heading."""
    rows = session.exec(select(WebhookEvent.status, func.count()).group_by(col(WebhookEvent.status))).all()
    return {s.value: 0 for s in WebhookEventStatus} | {WebhookEventStatus(status).value: n for status, n in rows}
