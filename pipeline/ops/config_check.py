"""Every problem of a configuration at once, as `verdicts config check` lists them: the settings' own
rules, the secret key, the provider's credentials and webhooks, placeholders a real send cannot go out
with, files, the database and the sending domain's DNS records."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pipeline.config import Settings, setting_problem
from pipeline.delivery.providers import ProviderConfigError, get_fallback, get_provider
from pipeline.email.render import check_overrides
from pipeline.errors import VerdictsError
from pipeline.ops.dns_records import Lookup
from pipeline.ops.findings import Finding, Severity
from pipeline.ops.provider_records import PROVIDERS
from pipeline.ops.sending_domain import check_sending_domain
from pipeline.secret_key import InsecureSecret, development_host, placeholder
from pipeline.store.db import require_schema

#: The setting that lets each provider's webhook in; without it bounces and complaints are refused (401).
WEBHOOK_SECRETS = {
    "postmark": "postmark_webhook_auth",
    "sendgrid": "sendgrid_webhook_public_key",
    "mailgun": "mailgun_webhook_signing_key",
    "resend": "resend_webhook_secret",
    "ses": "ses_sns_topic_arns",
}


def load_leniently() -> tuple[Settings, list[ErrorDetails]]:
    """The settings with each invalid value set aside for its default, and the validation errors: the
    other checks still run on everything else (every rule of Settings belongs to one field)."""
    errors: list[ErrorDetails] = []
    defaults: dict[str, Any] = {}  # each field's own type; __init__, not model_validate, so the environment is read
    while True:
        try:
            return Settings(**defaults), errors
        except ValidationError as exc:
            found = exc.errors()
            fields = {str(error["loc"][0]) for error in found if error["loc"]} - defaults.keys()
            if not fields:
                raise
            errors += found
            defaults |= {name: Settings.model_fields[name].get_default(call_default_factory=True) for name in fields}


def check_configuration(dns: bool = True, lookup: Lookup | None = None) -> list[Finding]:
    """Errors, warnings and notes, in the order an operator fixes them; DNS findings include what is right."""
    settings, errors = load_leniently()
    findings = [Finding("error", "", setting_problem(error)) for error in errors]
    findings += _secret(settings)
    findings += _provider(settings)
    findings += _placeholders(settings)
    findings += _files(settings)
    findings += _database(settings)
    if dns:
        findings += check_sending_domain(settings, lookup)
    return findings


def _secret(settings: Settings) -> list[Finding]:
    try:
        settings.require_real_secret()
    except InsecureSecret as exc:
        return [Finding("error", "", str(exc))]
    weakness = settings.weak_secret()
    if not weakness:
        return []
    return [
        Finding(
            "warning",
            "VERDICTS_SECRET_KEY",
            f"{weakness}: fine while VERDICTS_BASE_URL is {settings.base_url}, refused once it is your site's",
            "set a long random secret now",
        )
    ]


def _provider(settings: Settings) -> list[Finding]:
    findings = []
    for make in (get_provider, get_fallback):
        try:
            provider = make(settings)
        except ProviderConfigError as exc:  # the same words a send would stop with
            findings.append(Finding("error", "", str(exc)))
            continue
        if provider is not None:
            provider.close()
    for name in dict.fromkeys(filter(None, (settings.provider, settings.fallback_provider))):
        secret, label = WEBHOOK_SECRETS.get(name), PROVIDERS[name].label if name in PROVIDERS else ""
        if secret and not getattr(settings, secret):
            findings.append(
                Finding(
                    "warning",
                    f"VERDICTS_{secret.upper()}",
                    f"not set: {label}'s bounce and complaint reports to /webhooks/{name} are refused, "
                    "so dead addresses and complainers keep getting the newsletter",
                    f"set it from the webhook settings at {label}",
                )
            )
    return findings


def _placeholders(settings: Settings) -> list[Finding]:
    """The defaults run the demo; a real provider with them would send mail nobody can act on."""
    if settings.provider == "outbox":
        return []
    real = f"and VERDICTS_PROVIDER is {settings.provider}"
    sample_address = settings.postal_address == Settings.model_fields["postal_address"].default
    checks: list[tuple[bool, Severity, str, str, str]] = [
        (
            placeholder(settings.from_email.rpartition("@")[2]),
            "error",
            "VERDICTS_FROM_EMAIL",
            f"is {settings.from_email} {real}: it refuses to send from a domain that is not yours",
            "set it to an address on the domain you verified with the provider",
        ),
        (
            placeholder(urlsplit(settings.base_url).hostname or ""),
            "error",
            "VERDICTS_BASE_URL",
            f"is {settings.base_url} {real}: the unsubscribe and preferences links in every email would lead nowhere",
            "set it to the public https:// address of `verdicts serve`",
        ),
        (
            placeholder((settings.unsubscribe_mailto or "").rpartition("@")[2]),
            "warning",
            "VERDICTS_UNSUBSCRIBE_MAILTO",
            f"is {settings.unsubscribe_mailto}: readers whose mail client unsubscribes through it would write to a "
            "mailbox nobody reads and stay subscribed",
            "unset it (the one-click link is enough), or set it to a mailbox whose mail is processed within days",
        ),
        (
            placeholder(settings.list_id),
            "warning",
            "VERDICTS_LIST_ID",
            f"is {settings.list_id}: every email's List-Id names the example site, which mail filters sort by",
            "set it to a name under your own domain, e.g. weekly.<your domain>",
        ),
        (
            sample_address,
            "warning",
            "VERDICTS_POSTAL_ADDRESS",
            "is the sample address: CAN-SPAM asks for your postal address in every email",
            "set it to your street address or registered P.O. box",
        ),
        (
            settings.base_url.startswith("http://") and not development_host(settings.base_url),
            "warning",
            "VERDICTS_BASE_URL",
            f"is {settings.base_url}: readers' links and the editor's password travel unencrypted",
            "serve it over https:// (see deploy/ for a reverse proxy with TLS)",
        ),
    ]
    return [Finding(severity, subject, message, fix) for wrong, severity, subject, message, fix in checks if wrong]


def _files(settings: Settings) -> list[Finding]:
    try:
        check_overrides(settings.templates_dir)
    except VerdictsError as exc:
        return [Finding("error", "", str(exc))]
    return []


def _database(settings: Settings) -> list[Finding]:
    try:
        require_schema(settings.database_url)
    except VerdictsError as exc:
        # Before `verdicts init` (the operating guide runs `config check` first) a missing schema is expected.
        severity: Severity = "warning" if "`verdicts init`" in str(exc) else "error"
        return [Finding(severity, "database", str(exc))]
    return []
