"""The consent record and the suppression list: the two traces a reader's choices leave.

Every change of consent writes a ConsentRecord (who, when, how, what: the ``Evidence``), and every
withdrawal puts the address's hash on the suppression list, which only the reader's own
confirmation lifts (``service``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from subscribers.addresses import email_hash
from subscribers.models import ConsentEvent, ConsentRecord, Subscriber, Suppression


@dataclass(frozen=True)
class Evidence:
    """How a consent event happened: the channel and, for web requests, IP and user agent."""

    source: str  # form, embed, api, csv, cli, email, page
    ip: str | None = None
    user_agent: str | None = None
    wording_version: str | None = None
    #: Where a sign-up came from: the page or comparison slug, the link's utm_* parameters, and the reader
    #: whose signed referral code the link carried (``tokens.REFERRAL``).
    page: str | None = None
    utm: dict[str, str] | None = None
    referrer_id: int | None = None


def is_suppressed(session: Session, address: str) -> bool:
    return suppression(session, address) is not None


def suppression(session: Session, address: str) -> Suppression | None:
    return session.get(Suppression, email_hash(address))


#: A suppression's reason, as an operator reads it.
SUPPRESSION_REASONS = {
    "unsubscribed": "they unsubscribed",
    "complaint": "they marked a newsletter as spam",
    "bounce": "their mailbox bounced",
    "admin": "an operator suppressed it",
    "erased": "their data was erased",
}


def why_suppressed(entry: Suppression) -> str:
    return f"{SUPPRESSION_REASONS.get(entry.reason, entry.reason)}, {entry.created_at:%Y-%m-%d}"


def suppress_address(session: Session, address: str, reason: str) -> None:
    if not is_suppressed(session, address):
        session.add(Suppression(email_hash=email_hash(address), reason=reason))


def consent_fields(
    subscriber_id: int | None, address: str, event: ConsentEvent, evidence: Evidence, trigger: str | None = None
) -> dict[str, Any]:
    """One consent record's fields: the same for a reader added alone or in bulk."""
    return {
        "subscriber_id": subscriber_id,
        "email": address,
        "email_hash": email_hash(address),
        "event": event,
        "source": evidence.source,
        "wording_version": evidence.wording_version,
        "trigger": trigger,
        "ip": evidence.ip,
        "user_agent": (evidence.user_agent or "")[:400] or None,
        "page": evidence.page,
        "utm": evidence.utm or None,
        "referrer_id": evidence.referrer_id,
    }


def record_consent(
    session: Session, sub: Subscriber, event: ConsentEvent, evidence: Evidence, trigger: str | None = None
) -> None:
    session.add(ConsentRecord(**consent_fields(sub.id, sub.email, event, evidence, trigger)))
