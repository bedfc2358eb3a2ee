"""One place for configuration: environment variables prefixed ``VERDICTS_`` or a ``.env`` file."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import setting_checks as checks
from pipeline.secret_key import DEV_SECRET_KEY, MIN_SECRET_BYTES, SECRET_RECIPE, InsecureSecret, development_host

ProviderName = Literal["outbox", "postmark", "sendgrid", "mailgun", "resend", "ses"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERDICTS_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./verdicts.db", description=f"where everything is kept: {checks.DATABASE_URL_FORMS}"
    )
    db_retry_seconds: float = Field(
        default=300.0, ge=0, description="how long a send waits for a database that went away (restart, lock)"
    )
    provider: ProviderName = Field(
        default="outbox", description="who sends the email; outbox writes .eml files instead"
    )
    fallback_provider: ProviderName | None = Field(
        default=None, description="takes over when the provider keeps failing"
    )
    provider_base_url: str | None = Field(
        default=None, description="replaces the API's scheme and host (EU regions, tests)"
    )
    fallback_base_url: str | None = Field(default=None, description="the same, for the fallback provider")
    outbox_dir: Path = Field(
        default=Path("./outbox"), description="where the outbox provider writes one folder per issue"
    )

    postmark_server_token: SecretStr | None = Field(default=None, description="the Postmark server's API token")
    postmark_stream: str = Field(default="broadcast", description="the Postmark message stream for newsletters")
    sendgrid_api_key: SecretStr | None = Field(default=None, description="a SendGrid API key with Mail Send access")
    mailgun_api_key: SecretStr | None = Field(
        default=None, description="a Mailgun API key, or the sending domain's sending key"
    )
    mailgun_domain: str | None = Field(default=None, description="the Mailgun sending domain, e.g. mg.example.org")
    resend_api_key: SecretStr | None = Field(default=None, description="a Resend API key (Sending access is enough)")
    ses_region: str | None = Field(
        default=None,
        description="the AWS region of SES, e.g. eu-west-1; credentials: "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile",
    )
    ses_configuration_set: str | None = Field(
        default=None, description="the SES configuration set that publishes events"
    )

    postmark_webhook_auth: SecretStr | None = Field(default=None, description="user:password of the webhook URL")
    sendgrid_webhook_public_key: str | None = Field(default=None, description="the Event Webhook's verification key")
    mailgun_webhook_signing_key: SecretStr | None = Field(
        default=None, description="Mailgun's HTTP webhook signing key"
    )
    resend_webhook_secret: SecretStr | None = Field(
        default=None, description="the Resend webhook's signing secret (whsec_…)"
    )
    ses_sns_topic_arns: str | None = Field(default=None, description="comma-separated SNS topics allowed to post")
    webhook_max_age_seconds: int = Field(
        default=300,
        ge=30,
        description="slack (clock skew) added to each provider's documented webhook retry span; "
        "signed webhooks older than both are refused (replays are caught by event ids)",
    )
    webhook_max_body_mb: float = Field(
        default=5.0, gt=0, description="larger webhook bodies are refused with 413 unread"
    )
    form_max_body_kb: int = Field(
        default=256, ge=16, description="larger bodies of any other request are refused with 413 unread"
    )
    soft_bounce_limit: int = Field(default=3, ge=1, description="soft bounces in a row before a reader is suppressed")
    click_quiet_seconds: int = Field(
        default=60,
        ge=0,
        le=86400,
        description="clicks on an issue's comparison links are not counted while it is being sent nor this many "
        "seconds after its last message left: link scanners at the receiving end click then, readers rarely",
    )

    secret_key: SecretStr = Field(
        default=SecretStr(DEV_SECRET_KEY),
        description="signs every link in every email: "
        f"at least {MIN_SECRET_BYTES} random bytes, e.g. from {SECRET_RECIPE}",
    )
    base_url: str = Field(
        default="https://verdicts.example.com",
        description="the public address of `verdicts serve`, which every link in every email starts with",
    )
    from_email: str = Field(
        default="newsletter@verdicts.example.com", description="the sender, on a domain verified with the provider"
    )
    from_name: str = Field(
        default="Weekly AI Tool Verdicts", description="the sender's name readers see (also in List-Id)"
    )
    unsubscribe_mailto: str | None = Field(
        default=None,
        description="unset: each List-Unsubscribe header offers the "
        "one-click link alone. Set it only to a mailbox whose mail is processed: "
        "mail clients may unsubscribe by writing to it, and the law (CAN-SPAM) "
        "wants each such request honoured within 10 business days",
    )
    postal_address: str = Field(
        default="Weekly AI Tool Verdicts, 548 Market St #12345, San Francisco, CA 94104, USA",
        description="your postal address, in every email's footer (CAN-SPAM)",
    )
    list_id: str = Field(
        default="weekly.verdicts.example.com",
        max_length=255,
        description="the List-Id header (RFC 2919), e.g. weekly.example.org: mail filters sort by it",
    )

    editor_password: SecretStr | None = Field(
        default=None, description="the editor pages' password in clear; prefer VERDICTS_EDITOR_PASSWORD_HASH"
    )
    editor_password_hash: str | None = Field(default=None, description="from `verdicts editor hash-password`")
    editor_emails: str = Field(default="", description="comma-separated addresses test sends may go to")
    editor_session_hours: int = Field(default=12, ge=1, description="how long an editor stays logged in")
    editor_lockout_attempts: int = Field(default=5, ge=1, description="failed logins per IP per 15 minutes")
    require_2fa: bool = Field(
        default=False, description="admin accounts must enrol a TOTP second factor before doing anything else"
    )
    approvals_required: int = Field(
        default=1,
        ge=1,
        le=5,
        description="admins who approve an issue; from 2, none of them may be who made the last change",
    )

    # The secret first: the URL's check reads it.
    votes_webhook_secret: SecretStr | None = Field(default=None, description="HMAC key the site verifies votes with")
    votes_webhook_url: str | None = Field(
        default=None, description="the old name of WEBHOOK_URL: votes only, in their old body (see usage.md)"
    )

    webhook_secret: SecretStr | None = Field(default=None, description="HMAC key the site verifies each event with")
    webhook_url: str | None = Field(default=None, description="the site's endpoint for events (JSON, signed)")
    webhook_events: str = Field(
        default="all",
        description="comma-separated events to send: issue.sent, subscriber.confirmed, subscriber.unsubscribed, "
        "vote.cast; or all",
    )
    webhook_retry_seconds: float = Field(
        default=30.0, gt=0, description="the first retry's wait; each later one waits about twice as long (1 h at most)"
    )
    webhook_give_up_hours: float = Field(
        default=72.0, gt=0, description="an event still not delivered this long after it happened is marked failed"
    )

    schedule: str = Field(default="0 9 * * mon", description="when the scheduler builds and sends the issue (cron)")
    timezone: str = Field(default="UTC", description="the zone of the schedule, an IANA name such as Europe/Berlin")
    misfire_grace_seconds: int = Field(
        default=3600, ge=1, description="a run missed by less (the scheduler was down) still happens"
    )
    send_poll_minutes: int = Field(default=5, ge=1, description="how often the scheduler sends newly approved issues")
    max_comparisons: int = Field(default=5, ge=1, le=50, description="comparisons in one issue; the rest are linked")
    import_max_mb: float = Field(default=20.0, gt=0, description="largest comparison file `comparisons import` reads")
    csv_import_max_mb: float = Field(
        default=50.0, gt=0, description="largest CSV `subscribers import` reads (about a million readers)"
    )
    require_approval: bool = Field(default=True, description="an editor approves each issue before it is sent")

    pending_days: int = Field(default=7, ge=1, description="unconfirmed sign-ups are purged after this")
    confirm_max_age_hours: int = Field(default=48, ge=1, description="how long a confirmation link works")
    consent_wording_version: str = Field(
        default="2026-11-v1", description="recorded with each consent; change it with the wording"
    )
    consent_text: str = Field(
        default=(
            "Yes, send me the weekly newsletter. I can leave with one click in any issue. "
            "We keep a record of this consent (time, page, IP address) as the law asks."
        ),
        description="what the sign-up form asks readers to agree to",
    )
    evidence_retention_days: int = Field(default=365, ge=1, description="IP and user agent of consent records")
    signup_limit_per_ip: int = Field(default=10, ge=1, description="sign-ups per IP address per hour")
    signup_limit_per_address: int = Field(default=3, ge=1, description="confirmation emails per address per hour")
    embed_origins: str = Field(
        default="",
        description="comma-separated origins (https://host[:port]) whose pages may frame /embed/subscribe and call "
        "/api/v1/subscribe from a browser; empty: only this site",
    )

    batch_size: int | None = Field(
        default=None, ge=1, le=10_000, description="messages per claim; default: the provider's limit"
    )
    rate_per_second: float = Field(default=0.0, ge=0.0, description="0 = as fast as the provider allows")
    provider_concurrency: int = Field(default=4, ge=1, le=32, description="requests in flight at once")
    provider_max_request_mb: float = Field(
        default=4.0, gt=0, description="cap on one request's body (memory stays flat)"
    )
    provider_timeout_seconds: float = Field(default=30.0, gt=0, description="how long one API request may take")
    provider_retry_attempts: int = Field(default=6, ge=1, description="tries of one request (429, 5xx, no connection)")
    provider_retry_seconds: float = Field(default=120.0, gt=0, description="give up retrying one request after this")
    provider_retry_base_seconds: float = Field(
        default=0.5, ge=0, description="the first wait between tries; it doubles"
    )
    failover_after_seconds: float = Field(
        default=300.0,
        ge=0,
        description=(
            "how long a provider may keep failing before the fallback takes over, or, without one, the send pauses"
        ),
    )
    claim_lease_seconds: float = Field(
        default=300.0, gt=0, description="after this, a batch a sender claimed and never finished is another's"
    )
    after_crash: Literal["resend", "hold"] = Field(
        default="resend",
        description="rows a crashed sender had in flight: send again (every reader gets it) or hold as unknown",
    )

    # Running it for real (issue 21): overrides, proxies, logs, metrics.
    templates_dir: Path | None = Field(
        default=None, description="a folder of templates that replace the shipped ones by name"
    )
    trusted_proxies: str = Field(
        default="", description="comma-separated addresses/CIDRs whose X-Forwarded-For/-Proto are believed"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for a terminal; json, one object per line, for journald or a log shipper"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the least severe log record written (stderr)"
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="bearer token for /metrics; unset: /metrics is off"
    )

    # The sending domain, as `verdicts config check` looks it up in DNS (issue 21).
    dkim_selector: str | None = Field(
        default=None,
        description="comma-separated DKIM selectors your provider gave you "
        "(SES: the three tokens); unset: the provider's usual ones",
    )
    return_path_domain: str | None = Field(
        default=None,
        description="the bounce (Return-Path, MAIL FROM) domain your "
        "provider sends with; unset: the provider's default",
    )
    dns_server: str | None = Field(
        default=None, description="address[:port] of the DNS server `config check` asks; unset: the system's"
    )

    # The checks of single fields, in pipeline.setting_checks.
    _supported_database = field_validator("database_url")(checks.database_url)
    _http_url = field_validator("provider_base_url", "fallback_base_url")(checks.http_url)
    _password_hash_shape = field_validator("editor_password_hash")(checks.password_hash_shape)
    _proxy_addresses = field_validator("trusted_proxies")(checks.proxy_addresses)
    _origins = field_validator("embed_origins")(checks.origins)
    _metrics_token = field_validator("metrics_token")(checks.metrics_token)
    _known_timezone = field_validator("timezone")(checks.known_timezone)
    _https_base_url = field_validator("base_url")(checks.https_base_url)
    _blank_is_unset = field_validator("unsubscribe_mailto", mode="before")(checks.blank_is_unset)
    _address = field_validator("from_email", "unsubscribe_mailto")(checks.address)
    _display_name = field_validator("from_name")(checks.display_name)
    _list_id = field_validator("list_id")(checks.list_id)
    _webhook_needs_secret = field_validator("votes_webhook_url", "webhook_url")(checks.webhook_needs_secret)
    _one_webhook_url = field_validator("webhook_url")(checks.one_webhook_url)
    _webhook_url = field_validator("webhook_url")(checks.http_url)
    _webhook_events = field_validator("webhook_events")(checks.webhook_events)
    _selectors = field_validator("dkim_selector")(checks.selectors)
    _domain_name = field_validator("return_path_domain")(checks.domain_name)
    _dns_address = field_validator("dns_server")(checks.dns_server)

    def weak_secret(self) -> str | None:
        """What makes SECRET_KEY unfit to sign readers' links, wherever BASE_URL points; None when it is fit."""
        key = self.secret_key.get_secret_value()
        if key == DEV_SECRET_KEY:
            return "is the development key, published with the source"
        if not key.strip():
            return "is empty"
        if len(key.encode()) < MIN_SECRET_BYTES:
            return f"is {len(key.encode())} bytes long, fewer than {MIN_SECRET_BYTES}"
        return None

    def require_real_secret(self) -> None:
        """Anyone could forge a reader's links (preferences, unsubscribe, votes) signed with a weak key: the
        commands that serve or send them refuse to start, unless BASE_URL is a development host."""
        weakness = self.weak_secret()
        if weakness and not development_host(self.base_url):
            raise InsecureSecret(
                f"VERDICTS_SECRET_KEY {weakness}: anyone could forge the links of {self.base_url}. "
                f"Set it to a long random secret, e.g. the output of {SECRET_RECIPE}"
            )

    @property
    def trusted_proxy_networks(self) -> list[str]:
        """``TRUSTED_PROXIES`` as networks (``10.0.0.1/8`` means 10.0.0.0/8), as the proxy middleware takes them."""
        return [str(ipaddress.ip_network(entry, strict=False)) for entry in checks.entries(self.trusted_proxies)]

    @property
    def embed_origin_list(self) -> list[str]:
        """``EMBED_ORIGINS`` as browsers send them in ``Origin`` (lower case, no trailing slash)."""
        return [entry.lower().rstrip("/") for entry in checks.entries(self.embed_origins)]

    @property
    def site_webhook(self) -> tuple[str, SecretStr, bool] | None:
        """Where events go: (URL, secret, whether it is the old votes endpoint, which takes votes in their old
        body); None when no site listens, and then no event is queued."""
        if self.webhook_url and self.webhook_secret is not None:
            return self.webhook_url, self.webhook_secret, False
        if self.votes_webhook_url and self.votes_webhook_secret is not None:
            return self.votes_webhook_url, self.votes_webhook_secret, True
        return None

    @property
    def webhook_event_types(self) -> frozenset[str]:
        """The events to queue: none without a site, votes alone for the old votes endpoint."""
        site = self.site_webhook
        if site is None:
            return frozenset()
        if site[2]:
            return frozenset({"vote.cast"})
        chosen = checks.entries(self.webhook_events)
        return frozenset(checks.WEBHOOK_EVENTS if chosen == ["all"] else chosen)

    @property
    def editor_addresses(self) -> list[str]:
        return [a.strip() for a in self.editor_emails.split(",") if a.strip()]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


#: Not SecretStr, yet nobody should read them off a screen.
MASKED = frozenset({"editor_password_hash"})
#: May carry a password (shown by `config show` with it hidden), so an error does not echo it.
_UNSHOWN = frozenset({"database_url"})


def secret_setting(name: str) -> bool:
    """A setting whose value is never shown: `config show` masks it, and an error names it without it."""
    annotation = Settings.model_fields[name].annotation
    return annotation is SecretStr or SecretStr in get_args(annotation) or name in MASKED


def setting_problem(error: ErrorDetails) -> str:
    """One validation error of the settings, as the CLI and `config check` say it: the setting, its value
    (unless secret), what is wrong."""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings names them itself; its input is every setting, secrets included
        return message
    name = str(error["loc"][0])
    hidden = name in _UNSHOWN or (name in Settings.model_fields and secret_setting(name))
    shown = "" if hidden else f"={error.get('input')!r}"
    return f"VERDICTS_{'_'.join(map(str, error['loc'])).upper()}{shown}: {message}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
