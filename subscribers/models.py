"""Subscriber rows, the consent trail, and the suppression list."""

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from pipeline.store.models import UTCDateTime, str_enum, utcnow


class SubscriberStatus(StrEnum):
    pending = "pending"  # signed up, not yet confirmed: receives nothing
    confirmed = "confirmed"  # the only status that receives issues
    unsubscribed = "unsubscribed"


class Subscriber(SQLModel, table=True):
    # AUTOINCREMENT on SQLite: an erased reader's id (inside old signed links) is never reused.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    # Normalised by email-validator and lower-cased, so lookups are exact.
    email: str = Field(unique=True, max_length=320)
    name: str = Field(default="", max_length=200)
    status: SubscriberStatus = Field(default=SubscriberStatus.pending, sa_type=str_enum(SubscriberStatus), index=True)
    source: str = Field(default="cli", max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    paused_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    confirmation_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Soft bounces in a row (a delivery resets it); too many and the address is suppressed.
    soft_bounces: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Tool categories (comparisons' ``category``) the reader picked; empty is everything, the default.
    interests: list[str] = Field(
        default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False, server_default="[]")
    )
    # With interests: only comparisons that match them (an issue that matches none still comes whole).
    only_interests: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    # The reader whose "Forward this verdict" link brought this one in (from its signed referral code).
    referred_by: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="SET NULL", index=True)


class ConsentEvent(StrEnum):
    signup = "signup"
    confirm = "confirm"
    withdraw = "withdraw"
    resubscribe = "resubscribe"
    erase = "erase"


class ConsentRecord(SQLModel, table=True):
    """Who, when, how and what (ICO guidance): kept to demonstrate consent (GDPR Art. 7(1))."""

    __tablename__ = "consent_record"

    id: int | None = Field(default=None, primary_key=True)
    # Set to NULL when the reader is erased; the hash keeps the trail attributable without the address.
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="SET NULL", index=True)
    email: str | None = Field(default=None, max_length=320)
    email_hash: str = Field(max_length=64, index=True)
    event: ConsentEvent = Field(sa_type=str_enum(ConsentEvent))
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    source: str = Field(max_length=20)  # form, csv, cli, api, email
    wording_version: str | None = Field(default=None, max_length=40)
    trigger: str | None = Field(default=None, max_length=20)  # withdrawals: one-click, page, complaint, bounce, admin
    ip: str | None = Field(default=None, max_length=64)  # technical evidence, cleared after the retention period
    user_agent: str | None = Field(default=None, max_length=400)
    # Where a sign-up came from: the page or comparison slug, the link's utm_* parameters, the referrer.
    page: str | None = Field(default=None, max_length=200)
    utm: dict[str, str] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    referrer_id: int | None = Field(default=None, foreign_key="subscriber.id", ondelete="SET NULL")


class Suppression(SQLModel, table=True):
    """Addresses that must never get another newsletter; only a hash, so erasure keeps it."""

    email_hash: str = Field(primary_key=True, max_length=64)
    reason: str = Field(max_length=20)  # unsubscribed, complaint, bounce, admin, erased
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
