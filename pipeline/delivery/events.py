"""Provider events (from verified webhooks) into the ledger: stored once, tied to their
delivery row, and acted on — hard bounces, complaints and unsubscribes suppress the
reader at once; soft bounces count, and suppress after ``soft_bounce_limit`` in a row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import sqlalchemy as sa
from sqlmodel import Session, col, select

from pipeline.config import Settings
from pipeline.delivery.providers.base import EventKind, ProviderEvent
from pipeline.delivery.welcome import welcome_address
from pipeline.errors import InvalidInput
from pipeline.store.db import savepoint
from pipeline.store.models import Delivery, DeliveryEvent, DeliveryStatus, WebhookNonce
from subscribers.addresses import normalise_email
from subscribers.lookup import find_subscriber
from subscribers.service import suppress

log = logging.getLogger(__name__)

#: Events that end a reader's subscription, and the reason recorded on the suppression list.
SUPPRESSING = {EventKind.bounced: "bounce", EventKind.complained: "complaint", EventKind.unsubscribed: "unsubscribed"}


def record_events(
    session: Session, provider: str, events: Iterable[ProviderEvent], settings: Settings, *, nonce: str | None = None
) -> int:
    """Store and apply each new event; a provider's retry of an event already stored changes nothing.
    A ``nonce`` (a signed one-time value) is stored first: a request that reuses one stores nothing."""
    if nonce is not None and not _spend(session, provider, nonce):
        log.warning("a %s webhook reused a signature token already spent: nothing stored", provider)
        return 0
    stored = 0
    for event in events:
        try:
            with savepoint(session):
                delivery = find_delivery(session, provider, event)
                session.add(
                    DeliveryEvent(
                        provider=provider,
                        event_id=event.event_id[:200],
                        kind=event.kind.value,
                        delivery_id=delivery.id if delivery else None,
                        occurred_at=event.occurred_at,
                        detail=event.detail,
                    )
                )
                session.flush()
                _apply(session, event, delivery, settings)
        except sa.exc.IntegrityError:  # the same event again (retried webhook, or a concurrent copy)
            continue
        stored += 1
    session.commit()
    return stored


def _spend(session: Session, provider: str, nonce: str) -> bool:
    """True the first time ``nonce`` is seen: its primary key refuses a second row, on any process."""
    try:
        with savepoint(session):
            session.add(WebhookNonce(provider=provider, nonce=nonce[:200]))
            session.flush()
    except sa.exc.IntegrityError:
        return False
    return True


def find_delivery(session: Session, provider: str, event: ProviderEvent) -> Delivery | None:
    """By the delivery id the message carried; else by the provider's message id (and address)."""
    if event.delivery_id is not None:
        row = session.get(Delivery, event.delivery_id)
        if row is not None and (event.email is None or _same(row.email, event.email)):
            return row
    if event.provider_message_id:
        query = select(Delivery).where(Delivery.provider_message_id == event.provider_message_id)
        rows = [r for r in session.exec(query.limit(1000)) if event.email is None or _same(r.email, event.email)]
        if len(rows) == 1:
            return rows[0]
    return None


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def _apply(session: Session, event: ProviderEvent, delivery: Delivery | None, settings: Settings) -> None:
    if delivery is not None and delivery.status is DeliveryStatus.unknown:
        # The provider reports on the message, so it did accept it: the unknown outcome is settled.
        delivery.status, delivery.error = DeliveryStatus.sent, None
        session.add(delivery)
    # A welcome email is no issue's delivery: an event that names no address is traced by the provider's id.
    address = event.email or (delivery.email if delivery else welcome_address(session, event.provider_message_id))
    if not address:
        return
    try:
        address = normalise_email(address)
    except InvalidInput:
        log.warning("ignoring a %s event for an address that is not valid", event.kind.value)
        return
    if event.kind in SUPPRESSING:
        suppress(session, address, SUPPRESSING[event.kind])
        return
    reader = find_subscriber(session, address)
    if reader is None:
        return
    if event.kind is EventKind.soft_bounced:
        reader.soft_bounces += 1
        if reader.soft_bounces >= settings.soft_bounce_limit:
            suppress(session, address, "bounce")
    elif event.kind is EventKind.delivered and reader.soft_bounces:
        reader.soft_bounces = 0
    session.add(reader)


def event_counts(session: Session, issue_id: int) -> dict[str, int]:
    """Readers per event kind for one issue (each delivery counted once per kind)."""
    rows = session.exec(
        select(col(DeliveryEvent.kind), sa.func.count(sa.distinct(col(DeliveryEvent.delivery_id))))
        .join(Delivery, col(Delivery.id) == col(DeliveryEvent.delivery_id))
        .where(col(Delivery.issue_id) == issue_id)
        .group_by(col(DeliveryEvent.kind))
    ).all()
    counts = {k.value: 0 for k in EventKind}
    counts.update(dict(rows))
    return counts


__all__ = ["record_events", "find_delivery", "event_counts"]
