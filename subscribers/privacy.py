"""What data protection asks of the list: a reader's export (GDPR Art. 15), erasure, and retention.

Erasure and the purge of unconfirmed sign-ups keep a hash on the suppression list and counts
anonymised; ``expire_evidence`` drops IP addresses and user agents after the retention period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, select, update

from pipeline.store.models import Comparison, Delivery, Issue, Tool, Vote, Welcome, saved_id, utcnow
from subscribers.addresses import email_hash
from subscribers.consent import Evidence, suppress_address
from subscribers.lookup import referral_count
from subscribers.models import ConsentEvent, ConsentRecord, Subscriber, SubscriberStatus


def export_data(session: Session, row: Subscriber) -> dict[str, Any]:
    """Everything we hold about one reader (GDPR Art. 15), as JSON-ready data."""

    trail = session.exec(
        select(ConsentRecord).where(col(ConsentRecord.subscriber_id) == row.id).order_by(col(ConsentRecord.id))
    ).all()
    deliveries = session.exec(
        select(col(Issue.week), col(Delivery.status), col(Delivery.sent_at))
        .join(Issue, col(Issue.id) == Delivery.issue_id)
        .where(col(Delivery.subscriber_id) == row.id)
        .order_by(col(Delivery.id))
    ).all()
    votes = session.exec(
        select(Tool.name, Comparison.slug, Vote.verdict, Vote.voted_at)
        .join(Tool, col(Tool.id) == Vote.tool_id)
        .join(Comparison, col(Comparison.id) == Tool.comparison_id)
        .where(col(Vote.subscriber_id) == row.id)
        .order_by(col(Vote.id))
    ).all()
    return {
        "email": row.email,
        "name": row.name,
        "status": row.status.value,
        "source": row.source,
        "created_at": _iso(row.created_at),
        "confirmed_at": _iso(row.confirmed_at),
        "unsubscribed_at": _iso(row.unsubscribed_at),
        "paused_until": _iso(row.paused_until),
        "interests": row.interests,
        "only_interests": row.only_interests,
        "readers_referred": referral_count(session, saved_id(row)),
        "consent": [
            {
                "event": c.event.value,
                "at": _iso(c.at),
                "source": c.source,
                "wording_version": c.wording_version,
                "trigger": c.trigger,
                "ip": c.ip,
                "user_agent": c.user_agent,
                "page": c.page,
                "utm": c.utm,
            }
            for c in trail
        ],
        "issues_received": [{"week": w, "status": s.value, "sent_at": _iso(at)} for w, s, at in deliveries],
        "votes": [{"comparison": slug, "tool": name, "verdict": v, "at": _iso(at)} for name, slug, v, at in votes],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def erase(session: Session, row: Subscriber, evidence: Evidence) -> None:
    """GDPR erasure: the person goes, a hash stays on the suppression list, counts survive anonymised."""
    hashed = email_hash(row.email)
    suppress_address(session, row.email, "erased")
    session.exec(update(Delivery).where(col(Delivery.subscriber_id) == row.id).values(subscriber_id=None, email=""))
    session.exec(update(Welcome).where(col(Welcome.subscriber_id) == row.id).values(subscriber_id=None, email=""))
    session.exec(update(Vote).where(col(Vote.subscriber_id) == row.id).values(subscriber_id=None))
    session.exec(
        update(ConsentRecord)
        .where(col(ConsentRecord.subscriber_id) == row.id)
        .values(subscriber_id=None, email=None, ip=None, user_agent=None)
    )
    session.add(
        ConsentRecord(
            subscriber_id=None, email=None, email_hash=hashed, event=ConsentEvent.erase, source=evidence.source
        )
    )
    session.delete(row)


def purge_pending(session: Session, days: int) -> int:
    """Sign-ups never confirmed within ``days`` are deleted (and their trail anonymised). The rows
    are picked by a subquery, not a list of ids: after a wave of bot sign-ups, 70,000 ids were
    more bound values than PostgreSQL takes in one statement, and every purge failed."""
    horizon = utcnow() - timedelta(days=days)
    stale = select(Subscriber.id).where(
        Subscriber.status == SubscriberStatus.pending,
        col(Subscriber.confirmed_at).is_(None),
        Subscriber.created_at < horizon,
    )
    session.exec(
        update(ConsentRecord)
        .where(col(ConsentRecord.subscriber_id).in_(stale))
        .values(subscriber_id=None, email=None, ip=None, user_agent=None)
    )
    return session.exec(delete(Subscriber).where(col(Subscriber.id).in_(stale))).rowcount


def expire_evidence(session: Session, days: int) -> int:
    """IP addresses and user agents are personal data: kept only for the retention period."""
    horizon = utcnow() - timedelta(days=days)
    return session.exec(
        update(ConsentRecord)
        .where(
            col(ConsentRecord.at) < horizon,
            col(ConsentRecord.ip).is_not(None) | col(ConsentRecord.user_agent).is_not(None),
        )
        .values(ip=None, user_agent=None)
    ).rowcount
