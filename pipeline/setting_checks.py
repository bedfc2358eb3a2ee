"""What one setting's value must look like: the checks `Settings` runs on each field as it loads.

Plain functions, attached to their fields in `pipeline.config` with ``field_validator``, so the model reads as
the list of settings and their defaults. Each check refuses a value where the mistake would otherwise surface
later and elsewhere (the first request to a provider, a header a mail client cannot parse, a forged link).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, ValidationInfo

from pipeline.secret_key import MIN_METRICS_TOKEN, SECRET_RECIPE

DATABASE_URL_FORMS = "sqlite:///path/to/verdicts.db or postgresql+psycopg://user:password@host:5432/dbname"

#: RFC 5322's atext: what a List-Id's dot-separated parts are made of.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DNS_LABELS = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*"


def http_url(value: str | None) -> str | None:
    """Checked here: httpx would refuse it only at the first request, as if the provider had not answered."""
    if value is not None and not re.fullmatch(r"https?://[^/\s?#]+(/\S*)?", value):
        raise ValueError("must be an http:// or https:// address, e.g. https://api.eu.mailgun.net")
    return value


def password_hash_shape(value: str | None) -> str | None:
    """A mangled hash (a shell expanded its ``$`` parts) would refuse every password, lock-outs and all."""
    if value is not None and not re.fullmatch(
        r"pbkdf2_sha256\$[1-9][0-9]*\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]{44}", value
    ):
        raise ValueError(
            "not a hash from `verdicts editor hash-password` (pbkdf2_sha256$<iterations>$<salt>$<hash>): "
            "in a shell or a .env file, put it in single quotes so its $ signs stay"
        )
    return value


def proxy_addresses(value: str) -> str:
    """Checked here: uvicorn takes an entry that is not an address as a name no client ever has, and
    would silently trust nobody (or, with ``*``, everybody: any client could pick its address)."""
    for entry in entries(value):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f"{entry!r} is not an IP address or network; list the proxies' addresses, "
                "e.g. 127.0.0.1, 10.0.0.0/8, ::1"
            ) from None
    return value


def origins(value: str) -> str:
    """Checked here: a browser compares ``Origin`` with each entry exactly, so a path, a typo'd scheme or a
    wildcard would silently never match (or, with ``*``, let every site frame the form)."""
    for entry in entries(value):
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?", entry):
            raise ValueError(
                f"{entry!r} is not an origin; list scheme://host[:port] with no path, "
                "e.g. https://verdicts.example.com, http://localhost:8080"
            )
    return value


def metrics_token(value: SecretStr | None) -> SecretStr | None:
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


def known_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
    return value


def https_base_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (the public URL of the web app)")
    if any(ch in value for ch in "&<>\"' "):
        raise ValueError("must be a plain URL without &, quotes, angle brackets or spaces (it goes into every link)")
    return value.rstrip("/")


def blank_is_unset(value: object) -> object:
    return value or None  # VERDICTS_UNSUBSCRIBE_MAILTO= (empty) in a .env means no mailbox


def address(value: str | None) -> str | None:
    from email_validator import EmailNotValidError, validate_email

    if value is None:
        return None
    try:
        return validate_email(value, check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError as exc:
        raise ValueError(f"not a usable email address: {exc}") from None


def display_name(value: str) -> str:
    """Goes into the From and List-Id headers, quoted or RFC 2047-encoded: a header parser collapses runs
    of spaces, a control character cannot be encoded, and a literal ``=?`` would read as an encoded word."""
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must be one line without control characters (tabs, line breaks, DEL)")
    if "=?" in value:
        raise ValueError("must not contain '=?': mail programs would read it as an encoded word; drop or space it")
    return " ".join(value.split())


def list_id(value: str) -> str:
    """RFC 2919: a dot-atom with at least one dot, as mail filters match it; nothing else can be sent in List-Id."""
    if not re.fullmatch(rf"{_ATEXT}+(\.{_ATEXT}+)+", value):
        raise ValueError(
            "must be a list name and a domain joined by dots, in ASCII without spaces, @, commas, "
            "quotes or angle brackets, e.g. weekly.example.org"
        )
    return value


def webhook_needs_secret(value: str | None, info: ValidationInfo) -> str | None:
    """A field's rule, not the model's: `config check` can then set this one aside and check the rest."""
    secret = (info.field_name or "").removesuffix("_url") + "_secret"
    if value and secret in info.data and not info.data[secret]:
        raise ValueError(f"needs VERDICTS_{secret.upper()}: the site verifies each event with it")
    return value


#: What happens that the site may hear of (``pipeline.store.site_events``).
WEBHOOK_EVENTS = ("issue.sent", "subscriber.confirmed", "subscriber.unsubscribed", "vote.cast")


def one_webhook_url(value: str | None, info: ValidationInfo) -> str | None:
    """Two endpoints would each need their own queue position: the old votes one is a name for this one."""
    if value and info.data.get("votes_webhook_url"):
        raise ValueError(
            "VERDICTS_VOTES_WEBHOOK_URL is set too: it is the old name of this setting; remove it and its secret "
            "(votes then come here as vote.cast events, see docs/usage.md)"
        )
    return value


def webhook_events(value: str) -> str:
    chosen = entries(value)
    unknown = [name for name in chosen if name not in WEBHOOK_EVENTS] if chosen != ["all"] else []
    if unknown or not chosen:
        raise ValueError(
            f"{', '.join(map(repr, unknown)) or 'nothing'} is not an event: give all, or some of "
            + ", ".join(WEBHOOK_EVENTS)
            + " (comma-separated)"
        )
    return value


def selectors(value: str | None) -> str | None:
    for selector in entries(value or ""):
        if "_domainkey" in selector or not re.fullmatch(_DNS_LABELS, selector):
            raise ValueError(
                f"{selector!r} is not a DKIM selector: give the part before ._domainkey, "
                "e.g. s1 for s1._domainkey.example.org"
            )
    return value


def domain_name(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(_DNS_LABELS, value.rstrip(".")):
        raise ValueError("must be a domain name, e.g. bounces.example.org")
    return value.rstrip(".").lower() if value else value


def dns_server(value: str | None) -> str | None:
    if value is not None:
        dns_address(value)
    return value


def entries(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


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
