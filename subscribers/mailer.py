"""The double opt-in email, sent through the configured provider like any other message."""

from __future__ import annotations

import secrets

from pipeline.config import Settings
from pipeline.delivery.providers import OutgoingMessage, ProviderError, get_provider
from pipeline.email.personal import Body
from pipeline.email.render import render_confirmation
from pipeline.store.models import saved_id
from subscribers.models import Subscriber
from subscribers.tokens import CONFIRM, make_timed_token

CAMPAIGN = "confirmations"


def confirm_url(settings: Settings, subscriber_id: int, left_at: int | None = None) -> str:
    token = make_timed_token(settings.secret_key.get_secret_value(), CONFIRM, subscriber_id, left_at)
    return f"{settings.base_url}/confirm/{token}"


def send_confirmation(settings: Settings, subscriber: Subscriber, left_at: int | None = None) -> str | None:
    """Transactional, so no List-Unsubscribe: nothing more is sent unless the reader clicks.

    Whoever typed the address also typed the name: neither the greeting nor the ``To:`` header carries it
    (else anyone could send 200 characters of their own, links included, from our domain to anyone). The
    name is stored, and used once the reader has confirmed. ``left_at``: see ``service.sign_up``."""
    mail = render_confirmation(
        settings, email=subscriber.email, confirm_url=confirm_url(settings, saved_id(subscriber), left_at)
    )
    domain = settings.from_email.rpartition("@")[2]
    message = OutgoingMessage(
        to_email=subscriber.email,
        to_name="",
        body=Body.fixed(mail.subject, mail.html, mail.text),
        message_id=f"<{CAMPAIGN}.confirm-{subscriber.id}-{secrets.token_hex(4)}@{domain}>",
        delivery_id=None,
        headers={"Auto-Submitted": "auto-generated"},
    )
    provider = get_provider(settings)
    try:
        [outcome] = provider.send_batch([message], campaign=CAMPAIGN)
    finally:
        provider.close()
    if not outcome.ok:
        raise ProviderError(f"the confirmation email to {subscriber.email} was refused: {outcome.error}")
    return outcome.provider_message_id
