"""Email providers behind one interface; the setting ``VERDICTS_PROVIDER`` picks one."""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.providers.base import (
    OutgoingMessage, Outcome, Provider, ProviderConfigError, ProviderError, ProviderUnavailable, SendOutcome,
)
from pipeline.providers.http import ApiProvider
from pipeline.providers.mailgun import MailgunProvider
from pipeline.providers.outbox import OutboxProvider
from pipeline.providers.postmark import PostmarkProvider
from pipeline.providers.resend import ResendProvider
from pipeline.providers.sendgrid import SendGridProvider
from pipeline.providers.ses import SesProvider

PROVIDERS: dict[str, type] = {
    "outbox": OutboxProvider, "postmark": PostmarkProvider, "sendgrid": SendGridProvider,
    "mailgun": MailgunProvider, "resend": ResendProvider, "ses": SesProvider,
}
#: Providers that post events back to ``/webhooks/<name>``.
WEBHOOK_PROVIDERS: dict[str, type[ApiProvider]] = {k: v for k, v in PROVIDERS.items() if issubclass(v, ApiProvider)}


def get_provider(settings: Settings, name: str | None = None) -> Provider:
    """The configured provider; a missing credential raises ProviderConfigError before anything is sent."""
    return PROVIDERS[name or settings.provider](settings)


def get_fallback(settings: Settings) -> Provider | None:
    if settings.fallback_provider in (None, settings.provider):
        return None
    return get_provider(settings.model_copy(update={"provider_base_url": settings.fallback_base_url}), settings.fallback_provider)


__all__ = [
    "OutboxProvider", "OutgoingMessage", "Outcome", "Provider", "ProviderConfigError", "ProviderError", "ProviderUnavailable",
    "SendOutcome", "get_provider", "get_fallback", "PROVIDERS", "WEBHOOK_PROVIDERS",
]
