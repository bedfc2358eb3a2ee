"""One place for configuration: environment variables prefixed ``VERDICTS_`` or a ``.env`` file."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["outbox", "postmark", "sendgrid", "mailgun", "resend", "ses"]

DATABASE_URL_FORMS = "sqlite:///path/to/verdicts.db or postgresql+psycopg://user:password@host:5432/dbname"

#: The secret the demo and tests run with; `verdicts` warns when it is used elsewhere.
DEV_SECRET_KEY = "dev-only-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERDICTS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./verdicts.db"
    db_retry_seconds: float = Field(default=300.0, ge=0, description="how long a send waits for a database that went away (restart, lock)")
    provider: ProviderName = "outbox"
    fallback_provider: ProviderName | None = None
    provider_base_url: str | None = Field(default=None, description="replaces the API's scheme and host (EU regions, tests)")
    fallback_base_url: str | None = Field(default=None, description="the same, for the fallback provider")
    outbox_dir: Path = Path("./outbox")

    postmark_server_token: SecretStr | None = None
    postmark_stream: str = "broadcast"
    sendgrid_api_key: SecretStr | None = None
    mailgun_api_key: SecretStr | None = None
    mailgun_domain: str | None = None
    resend_api_key: SecretStr | None = None
    ses_region: str | None = None
    ses_configuration_set: str | None = None

    postmark_webhook_auth: SecretStr | None = Field(default=None, description="user:password of the webhook URL")
    sendgrid_webhook_public_key: str | None = None
    mailgun_webhook_signing_key: SecretStr | None = None
    resend_webhook_secret: SecretStr | None = None
    ses_sns_topic_arns: str | None = Field(default=None, description="comma-separated SNS topics allowed to post")
    webhook_max_age_seconds: int = Field(default=300, ge=30)
    webhook_max_body_mb: float = Field(default=5.0, gt=0, description="larger webhook bodies are refused with 413 unread")
    form_max_body_kb: int = Field(default=256, ge=16, description="larger bodies of any other request are refused with 413 unread")
    soft_bounce_limit: int = Field(default=3, ge=1, description="soft bounces in a row before a reader is suppressed")

    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    base_url: str = "https://verdicts.example.com"
    from_email: str = "newsletter@verdicts.example.com"
    from_name: str = "Weekly AI Tool Verdicts"
    unsubscribe_mailto: str = "unsubscribe@verdicts.example.com"
    postal_address: str = "Weekly AI Tool Verdicts, 548 Market St #12345, San Francisco, CA 94104, USA"
    list_id: str = "weekly.verdicts.example.com"

    editor_password: SecretStr | None = None
    editor_password_hash: str | None = Field(default=None, description="from `verdicts editor hash-password`")
    editor_emails: str = Field(default="", description="comma-separated addresses test sends may go to")
    editor_session_hours: int = Field(default=12, ge=1)
    editor_lockout_attempts: int = Field(default=5, ge=1, description="failed logins per IP per 15 minutes")

    votes_webhook_url: str | None = Field(default=None, description="the site's endpoint for each new vote")
    votes_webhook_secret: SecretStr | None = Field(default=None, description="HMAC key the site verifies votes with")

    schedule: str = "0 9 * * mon"
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(default=3600, ge=1)
    send_poll_minutes: int = Field(default=5, ge=1, description="how often the scheduler sends newly approved issues")
    max_comparisons: int = Field(default=5, ge=1, le=50)
    import_max_mb: float = Field(default=20.0, gt=0, description="largest comparison file `comparisons import` reads")
    csv_import_max_mb: float = Field(default=50.0, gt=0, description="largest CSV `subscribers import` reads (about a million readers)")
    require_approval: bool = True

    pending_days: int = Field(default=7, ge=1, description="unconfirmed sign-ups are purged after this")
    confirm_max_age_hours: int = Field(default=48, ge=1)
    consent_wording_version: str = "2026-11-v1"
    consent_text: str = (
        "Yes, send me the weekly newsletter. I can leave with one click in any issue. "
        "We keep a record of this consent (time, page, IP address) as the law asks."
    )
    evidence_retention_days: int = Field(default=365, ge=1, description="IP and user agent of consent records")
    signup_limit_per_ip: int = Field(default=10, ge=1, description="sign-ups per IP address per hour")
    signup_limit_per_address: int = Field(default=3, ge=1, description="confirmation emails per address per hour")

    batch_size: int | None = Field(default=None, ge=1, le=10_000, description="messages per claim; default: the provider's limit")
    rate_per_second: float = Field(default=0.0, ge=0.0, description="0 = as fast as the provider allows")
    provider_concurrency: int = Field(default=4, ge=1, le=32, description="requests in flight at once")
    provider_max_request_mb: float = Field(default=4.0, gt=0, description="cap on one request's body (memory stays flat)")
    provider_timeout_seconds: float = Field(default=30.0, gt=0)
    provider_retry_attempts: int = Field(default=6, ge=1)
    provider_retry_seconds: float = Field(default=120.0, gt=0, description="give up retrying one request after this")
    provider_retry_base_seconds: float = Field(default=0.5, ge=0)
    failover_after_seconds: float = Field(default=300.0, ge=0, description="how long a provider may keep failing before the fallback takes over, or, without one, the send pauses")
    claim_lease_seconds: float = Field(default=300.0, gt=0)
    after_crash: Literal["resend", "hold"] = Field(
        default="resend", description="rows a crashed sender had in flight: send again (every reader gets it) or hold as unknown")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        return database_url(value)

    @field_validator("provider_base_url", "fallback_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        """Checked here: httpx would refuse it only at the first request, as if the provider had not answered."""
        if value is not None and not re.fullmatch(r"https?://[^/\s?#]+(/\S*)?", value):
            raise ValueError("must be an http:// or https:// address, e.g. https://api.eu.mailgun.net")
        return value

    @field_validator("editor_password_hash")
    @classmethod
    def _password_hash_shape(cls, value: str | None) -> str | None:
        """A mangled hash (a shell expanded its ``$`` parts) would refuse every password, lock-outs and all."""
        if value is not None and not re.fullmatch(r"pbkdf2_sha256\$[1-9][0-9]*\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{44}", value):
            raise ValueError("not a hash from `verdicts editor hash-password` (pbkdf2_sha256$<iterations>$<salt>$<hash>): "
                             "in a shell or a .env file, put it in single quotes so its $ signs stay")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("base_url")
    @classmethod
    def _https_base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (the public URL of the web app)")
        if any(ch in value for ch in "&<>\"' "):
            raise ValueError("must be a plain URL without &, quotes, angle brackets or spaces (it goes into every link)")
        return value.rstrip("/")

    @field_validator("from_email", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str) -> str:
        from email_validator import EmailNotValidError, validate_email

        try:
            return validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
        except EmailNotValidError as exc:
            raise ValueError(f"not a usable email address: {exc}") from None

    @field_validator("from_name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(ord(ch) < 32 for ch in value):
            raise ValueError("must be one line without control characters")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.votes_webhook_url and not self.votes_webhook_secret:
            raise ValueError("VERDICTS_VOTES_WEBHOOK_URL needs VERDICTS_VOTES_WEBHOOK_SECRET: the site verifies each vote with it")
        return self

    def require_real_secret(self) -> None:
        """Signed links with the published development key could be forged by anyone."""
        host = self.base_url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
        if self.secret_key.get_secret_value() == DEV_SECRET_KEY and not (host.endswith("example.com") or host in ("localhost", "127.0.0.1")):
            from pipeline.errors import VerdictsError

            raise VerdictsError("VERDICTS_SECRET_KEY is the development key: set a long random secret before sending to real readers")

    @property
    def editor_addresses(self) -> list[str]:
        return [a.strip() for a in self.editor_emails.split(",") if a.strip()]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def database_url(value: str) -> str:
    """SQLite, or PostgreSQL through psycopg 3 (the driver installed). ``postgres://`` and
    ``postgresql://``, as hosting platforms hand them out, mean the latter."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValueError(f"not a database URL; use {DATABASE_URL_FORMS}") from None
    if url.get_backend_name() == "sqlite" and (url.host or not url.database or url.database == ":memory:"):
        # In memory, a database would last one command: `init` would succeed and every later command find nothing.
        raise ValueError("a SQLite URL has three slashes, then the file's path: sqlite:///verdicts.db, sqlite:////var/lib/verdicts.db")
    if "@" in (url.host or ""):
        raise ValueError("the host has an '@' in it: an '@' in the password is written %40")
    if url.drivername in ("postgres", "postgresql"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ValueError(f"the {url.drivername!r} database is not supported; use {DATABASE_URL_FORMS}")
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
