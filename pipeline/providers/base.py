"""The provider interface: what every email provider module offers the sender."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import VerdictsError


@dataclass(frozen=True)
class OutgoingMessage:
    """One private copy for one reader, with the headers compliance requires."""

    to_email: str
    to_name: str
    subject: str
    html: str
    text: str
    message_id: str
    # Correlation for webhooks: the delivery row this message belongs to (None for test sends).
    delivery_id: int | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SendOutcome:
    """What the provider said about one message, in the order the messages were given."""

    ok: bool
    provider_message_id: str | None = None
    error: str | None = None


class ProviderError(VerdictsError):
    """The whole request failed; ``permanent`` tells the sender whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Provider(Protocol):
    name: str
    #: How many messages one API call may carry.
    max_batch: int
    #: True when re-sending a message after a crash cannot make a second copy
    #: (the outbox overwrites its file; Resend honours an Idempotency-Key).
    idempotent: bool

    def send_batch(self, messages: Sequence[OutgoingMessage], *, campaign: str) -> list[SendOutcome]:
        """Send the messages; one outcome per message, or raise ProviderError for the whole batch."""
        ...

    def close(self) -> None: ...
