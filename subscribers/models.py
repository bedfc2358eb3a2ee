"""Subscriber rows: who may receive the newsletter."""


from datetime import datetime
from enum import Enum

from sqlmodel import Field, SQLModel

from pipeline.models import UTCDateTime, str_enum, utcnow


class SubscriberStatus(str, Enum):
    pending = "pending"  # signed up, not yet confirmed: receives nothing
    confirmed = "confirmed"  # the only status that receives issues
    unsubscribed = "unsubscribed"


class Subscriber(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Normalised by email-validator (lower-cased domain), so lookups are exact.
    email: str = Field(unique=True, max_length=320)
    name: str = Field(default="", max_length=200)
    status: SubscriberStatus = Field(default=SubscriberStatus.pending, sa_type=str_enum(SubscriberStatus), index=True)
    source: str = Field(default="cli", max_length=20)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
