"""One place for configuration: environment variables prefixed ``VERDICTS_`` or a ``.env`` file."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigurationError

ProviderName = Literal["outbox", "postmark", "sendgrid", "mailgun", "resend", "ses"]

DATABASE_URL_FORMS = "sqlite:///path/to/verdicts.db or postgresql+psycopg://user:password@host:5432/dbname"

#: The secret the demo and tests run with; `verdicts` warns when it is used elsewhere.
DEV_SECRET_KEY = "dev-only-secret-change-me"
#: A shorter key can be guessed offline from one signed link (HMAC-SHA256 keys: 32 bytes).
MIN_SECRET_BYTES = 32
#: How to make a key that passes: 32 random bytes, URL-safe.
SECRET_RECIPE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: The shortest VERDICTS_METRICS_TOKEN taken: /metrics has no lock-out, so a token must not be guessable.
MIN_METRICS_TOKEN = 16
#: Hosts no reader's email links can point at: any key will do there.
DEVELOPMENT_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: The placeholder domain of the defaults (RFC 2606): nobody's readers are there either.
PLACEHOLDER_DOMAIN = "example.com"

#: RFC 5322's atext: what a List-Id's dot-separated parts are made of.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DNS_LABELS = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*"


class InsecureSecret(ConfigurationError):
    """VERDICTS_SECRET_KEY is too weak for a public BASE_URL: anyone could forge readers' links."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERDICTS_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./verdicts.db", description=f"where everything is kept: {DATABASE_URL_FORMS}"
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

    # The secret first: the URL's check reads it.
    votes_webhook_secret: SecretStr | None = Field(default=None, description="HMAC key the site verifies votes with")
    votes_webhook_url: str | None = Field(default=None, description="the site's endpoint for each new vote")

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
        if value is not None and not re.fullmatch(
            r"pbkdf2_sha256\$[1-9][0-9]*\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{44}", value
        ):
            raise ValueError(
                "not a hash from `verdicts editor hash-password` (pbkdf2_sha256$<iterations>$<salt>$<hash>): "
                "in a shell or a .env file, put it in single quotes so its $ signs stay"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        """Checked here: uvicorn takes an entry that is not an address as a name no client ever has, and
        would silently trust nobody (or, with ``*``, everybody: any client could pick its address)."""
        for entry in _entries(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network; list the proxies' addresses, "
                    "e.g. 127.0.0.1, 10.0.0.0/8, ::1"
                ) from None
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty token (a .env line left blank) matched the empty credential of ``Authorization: Bearer``:
        /metrics was open to anyone. Empty means unset, as it reads; a short one could be guessed."""
        token = value.get_secret_value().strip() if value is not None else ""
        if not token:
            return None
        if len(token) < MIN_METRICS_TOKEN:
            raise ValueError(
                f"is {len(token)} characters long, fewer than {MIN_METRICS_TOKEN}: anyone could guess it; "
                f"use a long random token, e.g. from {SECRET_RECIPE}"
            )
        return SecretStr(token)

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
            raise ValueError(
                "must be a plain URL without &, quotes, angle brackets or spaces (it goes into every link)"
            )
        return value.rstrip("/")

    @field_validator("unsubscribe_mailto", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return value or None  # VERDICTS_UNSUBSCRIBE_MAILTO= (empty) in a .env means no mailbox

    @field_validator("from_email", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        from email_validator import EmailNotValidError, validate_email

        if value is None:
            return None
        try:
            return validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
        except EmailNotValidError as exc:
            raise ValueError(f"not a usable email address: {exc}") from None

    @field_validator("from_name")
    @classmethod
    def _display_name(cls, value: str) -> str:
        """Goes into the From and List-Id headers, quoted or RFC 2047-encoded: a header parser collapses runs
        of spaces, a control character cannot be encoded, and a literal ``=?`` would read as an encoded word."""
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise ValueError("must be one line without control characters (tabs, line breaks, DEL)")
        if "=?" in value:
            raise ValueError("must not contain '=?': mail programs would read it as an encoded word; drop or space it")
        return " ".join(value.split())

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str) -> str:
        """RFC 2919: a dot-atom with at least one dot, as mail filters match it; nothing else can be sent in List-Id."""
        if not re.fullmatch(rf"{_ATEXT}+(\.{_ATEXT}+)+", value):
            raise ValueError(
                "must be a list name and a domain joined by dots, in ASCII without spaces, @, commas, "
                "quotes or angle brackets, e.g. weekly.example.org"
            )
        return value

    @field_validator("votes_webhook_url")
    @classmethod
    def _webhook_needs_secret(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A field's rule, not the model's: `config check` can then set this one aside and check the rest."""
        if value and "votes_webhook_secret" in info.data and not info.data["votes_webhook_secret"]:
            raise ValueError("needs VERDICTS_VOTES_WEBHOOK_SECRET: the site verifies each vote with it")
        return value

    @field_validator("dkim_selector")
    @classmethod
    def _selectors(cls, value: str | None) -> str | None:
        for selector in _entries(value or ""):
            if "_domainkey" in selector or not re.fullmatch(_DNS_LABELS, selector):
                raise ValueError(
                    f"{selector!r} is not a DKIM selector: give the part before ._domainkey, "
                    "e.g. s1 for s1._domainkey.example.org"
                )
        return value

    @field_validator("return_path_domain")
    @classmethod
    def _domain_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(_DNS_LABELS, value.rstrip(".")):
            raise ValueError("must be a domain name, e.g. bounces.example.org")
        return value.rstrip(".").lower() if value else value

    @field_validator("dns_server")
    @classmethod
    def _dns_address(cls, value: str | None) -> str | None:
        if value is not None:
            dns_address(value)
        return value

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
        return [str(ipaddress.ip_network(entry, strict=False)) for entry in _entries(self.trusted_proxies)]

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


def _entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def development_host(base_url: str) -> bool:
    """localhost, 127.0.0.1 or [::1] exactly, or a placeholder host (see `placeholder`)."""
    host = urlsplit(base_url).hostname or ""
    return host in DEVELOPMENT_HOSTS or placeholder(host)


def placeholder(domain: str) -> bool:
    """example.com or a name under it, label by label: ``myexample.com`` is a real domain someone owns,
    and ``example.com.evil.org`` is not under example.com."""
    domain = domain.lower().rstrip(".")
    return domain == PLACEHOLDER_DOMAIN or domain.endswith("." + PLACEHOLDER_DOMAIN)


def dns_address(value: str) -> tuple[str, int]:
    """``address``, ``address:port`` or ``[IPv6]:port`` → (address, port); a name would need DNS to find DNS."""
    host, port = value, "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address with an optional port: 127.0.0.1:53, [::1]:53") from None
    if not 0 < number < 65536:
        raise ValueError(f"{value!r}: the port must be 1 to 65535")
    return host, number


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
        raise ValueError(
            "a SQLite URL has three slashes, then the file's path: sqlite:///verdicts.db, sqlite:////var/lib/verdicts.db"
        )
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
