"""Subscriber rules: normalised addresses, who is confirmed, and leaving for good."""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from sqlmodel import Session, col, select

from pipeline.errors import InvalidInput, NotFound
from pipeline.models import utcnow
from subscribers.models import Subscriber, SubscriberStatus

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalise_email(raw: str) -> str:
    """The address as we store it; raises InvalidInput with email-validator's reason.

    Lower-cased whole: mailbox providers treat local parts case-insensitively in practice,
    and one reader must not become two rows (and get two copies) by a capital letter.
    """
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidInput(f"{raw.strip()!r} is not a valid email address: {exc}") from None


def clean_name(raw: str | None) -> str:
    """A display name safe for a From/To header and a greeting: no control characters (CR/LF)."""
    name = " ".join((raw or "").split())
    if _CONTROL.search(name):
        raise InvalidInput(f"name {raw!r} contains control characters")
    if len(name) > 200:
        raise InvalidInput("name is longer than 200 characters")
    return name


@dataclass(frozen=True)
class AddResult:
    subscriber: Subscriber
    outcome: str  # "added", "updated", "unchanged", "suppressed"


def add_subscriber(session: Session, email: str, name: str | None = None, *, confirmed: bool = False, source: str = "cli") -> AddResult:
    """Add or update a reader. Someone who left stays out: only they can opt in again."""
    address = normalise_email(email)
    clean = clean_name(name)
    row = find_subscriber(session, address)
    if row is None:
        row = Subscriber(email=address, name=clean, source=source)
        if confirmed:
            row.status, row.confirmed_at = SubscriberStatus.confirmed, utcnow()
        session.add(row)
        session.flush()
        return AddResult(row, "added")
    if row.status is SubscriberStatus.unsubscribed:
        return AddResult(row, "suppressed")
    changed = False
    if name is not None and clean != row.name:
        row.name, changed = clean, True
    if confirmed and row.status is not SubscriberStatus.confirmed:
        row.status, row.confirmed_at, changed = SubscriberStatus.confirmed, utcnow(), True
    session.add(row)
    return AddResult(row, "updated" if changed else "unchanged")


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def get_by_email(session: Session, email: str) -> Subscriber:
    row = find_subscriber(session, normalise_email(email))
    if row is None:
        raise NotFound(f"no subscriber with the address {email!r}")
    return row


def unsubscribe(session: Session, subscriber: Subscriber) -> Subscriber:
    """Idempotent: leaving twice is still one departure, at the first time."""
    if subscriber.status is not SubscriberStatus.unsubscribed:
        subscriber.status, subscriber.unsubscribed_at = SubscriberStatus.unsubscribed, utcnow()
        session.add(subscriber)
    return subscriber


def list_subscribers(session: Session, status: SubscriberStatus | None = None) -> list[Subscriber]:
    query = select(Subscriber).order_by(col(Subscriber.id))
    if status is not None:
        query = query.where(Subscriber.status == status)
    return list(session.exec(query))
