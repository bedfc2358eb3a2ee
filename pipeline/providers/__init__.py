"""Email providers behind one interface; the setting ``VERDICTS_PROVIDER`` picks one."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import Settings
from pipeline.providers.base import OutgoingMessage, Provider, ProviderError, SendOutcome
from pipeline.providers.outbox import OutboxProvider

PROVIDERS: dict[str, Callable[[Settings], Provider]] = {"outbox": OutboxProvider}


def get_provider(settings: Settings) -> Provider:
    return PROVIDERS[settings.provider](settings)


__all__ = ["OutgoingMessage", "Provider", "ProviderError", "SendOutcome", "get_provider", "PROVIDERS"]
