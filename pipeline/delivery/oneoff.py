"""Messages outside any ledger: ``[TEST]`` copies (of an issue, of the welcome) and one automatic email (a
confirmation link, a set-password link). Each is checked as its provider would be handed it before any leaves,
and the provider is opened and closed around the send."""

from __future__ import annotations

import secrets

from pipeline.config import Settings
from pipeline.delivery.messages import UnbuildableMessage, payload_problem
from pipeline.delivery.providers import OutgoingMessage, ProviderError, SendOutcome, get_provider
from pipeline.email.personal import Body


def send_checked(settings: Settings, messages: list[OutgoingMessage], campaign: str, what: str) -> list[SendOutcome]:
    """Hand ``messages`` over as one batch; one the provider could not take stops them all, named (``what``, e.g.
    "the test copy of issue 3") with its address, before anything is sent."""
    provider = get_provider(settings)
    try:
        for message in messages:
            if problem := payload_problem(provider, message, settings, campaign):
                raise UnbuildableMessage(f"{what} for {message.to_email} {problem}. Nothing was sent")
        return provider.send_batch(messages, campaign=campaign)
    finally:
        provider.close()


def send_automatic(settings: Settings, to_email: str, body: Body, *, campaign: str, ref: str, what: str) -> str | None:
    """One transactional email: to the address alone (no name a stranger could have typed), no List-Unsubscribe
    (nothing more follows unless its reader acts), marked ``Auto-Submitted``. Returns the provider's id; a refusal
    raises ``ProviderError`` naming ``what`` ("the confirmation email")."""
    domain = settings.from_email.rpartition("@")[2]
    message = OutgoingMessage(
        to_email=to_email,
        to_name="",
        body=body,
        message_id=f"<{campaign}.{ref}-{secrets.token_hex(4)}@{domain}>",
        delivery_id=None,
        headers={"Auto-Submitted": "auto-generated"},
    )
    [outcome] = send_checked(settings, [message], campaign, what)
    if not outcome.ok:
        raise ProviderError(f"{what} to {to_email} was refused: {outcome.error}")
    return outcome.provider_message_id
