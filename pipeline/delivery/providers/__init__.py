"""Email providers behind one interface; the setting ``VERDICTS_PROVIDER`` picks one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from pipeline.config import Settings
from pipeline.delivery.providers.base import (
    CheckResult,
    Outcome,
    OutgoingMessage,
    Provider,
    ProviderConfigError,
    ProviderError,
    ProviderUnavailable,
    SendOutcome,
)
from pipeline.delivery.providers.outbox import OutboxProvider
from pipeline.resources import DISTRIBUTION

if TYPE_CHECKING:  # the type only: importing http loads httpx, which an outbox send never needs
    from pipeline.delivery.providers.http import ApiProvider

C = TypeVar("C")

#: Providers whose libraries are an extra of the package (botocore, cryptography), not installed by default.
EXTRAS = {"ses": "ses", "sendgrid": "sendgrid"}


class _Registry(Mapping[str, C], Generic[C]):
    """Provider name → class. A provider's module is imported when it is first used, so a send
    through Mailgun never loads botocore (SES) or cryptography (webhook signatures): a fifth of
    the CLI's start-up time."""

    def __init__(self, classes: dict[str, str]) -> None:
        self._classes = classes

    def __getitem__(self, name: str) -> C:
        module, _, cls = self._classes[name].rpartition(".")
        try:
            # The class named in the table this registry was made with, of the type it was declared with.
            return cast(C, getattr(importlib.import_module(f"pipeline.delivery.providers.{module}"), cls))
        except ModuleNotFoundError as exc:
            if name not in EXTRAS:
                raise
            raise ProviderConfigError(
                f"the {name} provider needs {exc.name}, which is not installed: "
                f"pip install '{DISTRIBUTION}[{EXTRAS[name]}]'"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


_API = {
    "postmark": "postmark.PostmarkProvider",
    "sendgrid": "sendgrid.SendGridProvider",
    "mailgun": "mailgun.MailgunProvider",
    "resend": "resend.ResendProvider",
    "ses": "ses.SesProvider",
}
PROVIDERS: _Registry[Callable[[Settings], Provider]] = _Registry({"outbox": "outbox.OutboxProvider", **_API})
#: Providers that post events back to ``/webhooks/<name>``.
WEBHOOK_PROVIDERS: _Registry[type[ApiProvider]] = _Registry(_API)


def get_provider(settings: Settings, name: str | None = None) -> Provider:
    """The configured provider; a missing credential raises ProviderConfigError before anything is sent."""
    return PROVIDERS[name or settings.provider](settings)


def get_fallback(settings: Settings) -> Provider | None:
    if settings.fallback_provider in (None, settings.provider):
        return None
    return get_provider(
        settings.model_copy(update={"provider_base_url": settings.fallback_base_url}), settings.fallback_provider
    )


__all__ = [
    "CheckResult",
    "OutboxProvider",
    "OutgoingMessage",
    "Outcome",
    "Provider",
    "ProviderConfigError",
    "ProviderError",
    "ProviderUnavailable",
    "SendOutcome",
    "get_provider",
    "get_fallback",
    "PROVIDERS",
    "WEBHOOK_PROVIDERS",
]
