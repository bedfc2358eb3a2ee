"""Subscriber rules: double opt-in, confirming, leaving, pausing and renaming.

Each change of consent here writes its ConsentRecord (``consent``), and every withdrawal puts
the address on the suppression list, which only the reader's own confirmation lifts. Bulk
imports are in ``bulk``, look-ups in ``lookup``, a reader's export and erasure in ``privacy``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete

from pipeline.errors import InvalidInput, InvalidState, VerdictsError
from pipeline.store.db import dialect_insert, savepoint
from pipeline.store.models import DeliveryStatus, Welcome, saved_id, utcnow
from pipeline.store.site_events import subscriber_event
from subscribers.addresses import clean_name, email_hash, mask, normalise_email
from subscribers.consent import Evidence, is_suppressed, record_consent, suppress_address, suppression
from subscribers.interests import clean_interests
from subscribers.lookup import find_subscriber, get_subscriber
from subscribers.models import ConsentEvent, Subscriber, SubscriberStatus, Suppression


@dataclass(frozen=True)
class AddResult:
    subscriber: Subscriber
    outcome: str  # "added", "updated", "unchanged", "suppressed"


def add_subscriber(
    session: Session, email: str, name: str | None = None, *, confirmed: bool = False, source: str = "cli"
) -> AddResult:
    """Add or update a reader from the CLI or an import. Someone who left stays out: only they can opt in again."""
    address = normalise_email(email)
    clean = clean_name(name)
    row = find_subscriber(session, address)
    if (row is None and is_suppressed(session, address)) or (
        row is not None and row.status is SubscriberStatus.unsubscribed
    ):
        return AddResult(row or Subscriber(email=address), "suppressed")
    evidence = Evidence(source=source)
    if row is None:
        row = Subscriber(email=address, name=clean, source=source)
        session.add(row)
        session.flush()
        record_consent(session, row, ConsentEvent.signup, evidence)
        if confirmed:
            _confirm(session, row, evidence)
        return AddResult(row, "added")
    changed = False
    if name is not None and clean != row.name:
        row.name, changed = clean, True
    if confirmed and row.status is not SubscriberStatus.confirmed:
        _confirm(session, row, evidence)
        changed = True
    session.add(row)
    return AddResult(row, "updated" if changed else "unchanged")


@dataclass(frozen=True)
class SignupResult:
    subscriber: Subscriber
    send_confirmation: bool
    #: For a reader who left: the departure the link names (``left_at``), so only this link brings them back.
    left_at: int | None = None


def sign_up(
    session: Session, email: str, name: str | None, evidence: Evidence, interests: list[str] | None = None
) -> SignupResult:
    """A public sign-up, typed by anyone: pending until the reader presses the emailed link's button.

    A confirmed reader is not emailed again. An address that complained (suppression reason ``complaint``) is
    never emailed by a sign-up. A reader who left (unsubscribed, bounced, suppressed) keeps their status, name
    and suppression: nothing changes until the new link's button is pressed (``confirm``). An address with no
    row (new, or erased) gets a pending row; an erased one keeps its suppression until confirmed too.

    ``interests`` (checked by ``interests.clean_interests``) and the referrer (``evidence.referrer_id``) are set
    on a new or pending reader only: a stranger cannot change a confirmed reader's choices."""
    address = normalise_email(email)
    clean = clean_name(name)
    entry = suppression(session, address)
    if entry is not None and entry.reason == "complaint":
        return SignupResult(find_subscriber(session, address) or Subscriber(email=address), False)
    row = find_subscriber(session, address)
    if row is not None and row.status is SubscriberStatus.unsubscribed:
        return SignupResult(row, True, left_at(row))
    row = row or _add_signup(session, address, clean, evidence)
    if row.status is SubscriberStatus.confirmed:
        return SignupResult(row, False)
    # New, or pending again: the link goes out.
    if clean:
        row.name = clean
    if interests is not None:
        row.interests = interests
    row.confirmation_sent_at = utcnow()
    session.add(row)
    session.flush()
    record_consent(session, row, ConsentEvent.signup, evidence)
    return SignupResult(row, True)


def left_at(row: Subscriber) -> int | None:
    """A departed reader's departure, in microseconds: what a link sent after it carries (``tokens``)."""
    if row.status is not SubscriberStatus.unsubscribed or row.unsubscribed_at is None:
        return None
    return int(row.unsubscribed_at.timestamp() * 1_000_000)


def _add_signup(session: Session, address: str, name: str, evidence: Evidence) -> Subscriber:
    """A new reader's row; the one another request added first, if the same form arrived twice at once."""
    try:
        with savepoint(session):
            row = Subscriber(email=address, name=name, source=evidence.source, referred_by=evidence.referrer_id)
            session.add(row)
        return row
    except IntegrityError:  # a double click: the other request added it
        again = find_subscriber(session, address)
        if again is None:  # the row that clashed is gone again: another unique value clashed
            raise
        return again


def _confirm(session: Session, row: Subscriber, evidence: Evidence, event: ConsentEvent = ConsentEvent.confirm) -> None:
    row.status, row.confirmed_at, row.unsubscribed_at = SubscriberStatus.confirmed, utcnow(), None
    session.add(row)
    # Their own confirmation is the one thing that lifts a suppression.
    session.exec(delete(Suppression).where(col(Suppression.email_hash) == email_hash(row.email)))
    record_consent(session, row, event, evidence)
    subscriber_event(session, "subscriber.confirmed", saved_id(row), row.email, source=row.source, at=_now_iso(row))


class LeftSince(VerdictsError):
    """A confirmation link opened after its reader unsubscribed."""


def confirm(
    session: Session, subscriber_id: int, evidence: Evidence, sent_after: int | None = None
) -> tuple[Subscriber, bool]:
    """Double opt-in's second step; returns (reader, whether this click changed anything).

    Only a pending reader is confirmed, or one who left if the link was sent after that departure
    (``sent_after``, from the link). A link stays valid for CONFIRM_MAX_AGE_HOURS, and a mail scanner
    re-reading an old email must not undo an unsubscribe: coming back takes a new sign-up (a new link)
    or the preferences page's Resubscribe button."""
    row = get_subscriber(session, subscriber_id)
    if not confirmable(row, sent_after):
        return row, False
    _confirm(session, row, evidence)
    queue_welcome(session, row)
    return row, True


def queue_welcome(session: Session, row: Subscriber) -> None:
    """The welcome email, queued in the transaction that confirms (a crash after it cannot lose it) and sent by
    ``pipeline.delivery.welcome``. Once per reader: one who left and came back, or two presses of the button at
    once, is welcomed once. Readers added as confirmed by the CLI or an import get none (they never signed up)."""
    insert = dialect_insert(session.get_bind().dialect.name, Welcome).values(
        subscriber_id=saved_id(row), email=row.email, status=DeliveryStatus.pending, created_at=utcnow(), attempts=0
    )
    session.exec(insert.on_conflict_do_nothing(index_elements=["subscriber_id"]))


def confirmable(row: Subscriber, sent_after: int | None = None) -> bool:
    """Whether confirming would change anything (what the confirmation page asks before its button): False
    for a reader confirmed already; ``LeftSince`` for one who unsubscribed after the link was sent (a link a
    sign-up sent after the departure, ``sent_after`` == ``left_at(row)``, brings them back)."""
    if row.status is SubscriberStatus.confirmed:
        return False
    if row.status is SubscriberStatus.unsubscribed and (sent_after is None or sent_after != left_at(row)):
        raise LeftSince(f"{mask(row.email)} unsubscribed after this link was sent")
    return True


def resubscribe(session: Session, row: Subscriber, evidence: Evidence) -> Subscriber:
    """From the preferences page: the signed link proves the reader controls the address."""
    if row.status is not SubscriberStatus.confirmed:
        _confirm(session, row, evidence, ConsentEvent.resubscribe)
    return row


def unsubscribe(session: Session, row: Subscriber, *, trigger: str = "admin", evidence: Evidence | None = None) -> bool:
    """Idempotent: leaving twice is one departure, at the first time. Returns whether it changed anything."""
    if row.status is SubscriberStatus.unsubscribed:
        return False
    row.status, row.unsubscribed_at, row.paused_until = SubscriberStatus.unsubscribed, utcnow(), None
    session.add(row)
    reason = trigger if trigger in ("complaint", "bounce") else "unsubscribed"
    suppress_address(session, row.email, reason)
    record_consent(session, row, ConsentEvent.withdraw, evidence or Evidence(source="cli"), trigger=trigger)
    subscriber_event(session, "subscriber.unsubscribed", saved_id(row), row.email, reason=trigger, at=_now_iso(row))
    return True


def _now_iso(row: Subscriber) -> str:
    """When the change the event tells of happened (the row's own time of it)."""
    moment = row.unsubscribed_at if row.status is SubscriberStatus.unsubscribed else row.confirmed_at
    return (moment or utcnow()).isoformat()


def suppress(session: Session, address: str, reason: str) -> None:
    """Admin or provider event: the address gets nothing more, known reader or not."""
    normalised = normalise_email(address)
    row = find_subscriber(session, normalised)
    if row is not None:
        unsubscribe(
            session, row, trigger=reason, evidence=Evidence(source="admin" if reason == "admin" else "provider")
        )
    suppress_address(session, normalised, reason)


class NothingToPause(InvalidState):
    """A reader who left gets nothing already; a pause would say otherwise (and outlast a return)."""


def pause(session: Session, row: Subscriber, weeks: int) -> Subscriber:
    if not 0 <= weeks <= 8:
        raise InvalidInput("a pause is 1 to 8 weeks (0 resumes now)")
    if row.status is SubscriberStatus.unsubscribed:
        raise NothingToPause(f"{mask(row.email)} is unsubscribed: there is nothing to pause")
    row.paused_until = utcnow() + timedelta(weeks=weeks) if weeks else None
    session.add(row)
    return row


def rename(session: Session, row: Subscriber, name: str) -> Subscriber:
    row.name = clean_name(name)
    session.add(row)
    return row


_log = logging.getLogger(__name__)


def set_interests(session: Session, row: Subscriber, values: list[str], only: bool) -> Subscriber:
    """The reader's interests (their issue's line-up, ``pipeline.content.lineups``). Not consent, so no consent
    record; logged with the reader's id (never the address). A bad value changes nothing (InvalidInput)."""
    picked = clean_interests(session, values)
    row.interests, row.only_interests = picked, only and bool(picked)  # "only" with none picked means nothing
    session.add(row)
    _log.info(
        "reader %s chose interests %s%s",
        row.id,
        picked or "(everything)",
        " only" if row.only_interests else "",
        extra={"subscriber_id": row.id},
    )
    return row
