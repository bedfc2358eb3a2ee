"""The double opt-in email, sent through the configured provider like any other message."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.delivery.oneoff import send_automatic
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
    return send_automatic(
        settings,
        subscriber.email,
        Body.fixed(mail.subject, mail.html, mail.text),
        campaign=CAMPAIGN,
        ref=f"confirm-{subscriber.id}",
        what="the confirmation email",
    )
