"""The rules of the key that signs every reader's link, and of the hosts where a weak one does no harm.

Kept apart from the settings: `config check`, the commands that serve or send, and the sending domain's
checks all ask these questions (is the key fit, is this host a development or placeholder one), and the
answers do not depend on how the settings are loaded.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pipeline.errors import ConfigurationError

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


class InsecureSecret(ConfigurationError):
    """VERDICTS_SECRET_KEY is too weak for a public BASE_URL: anyone could forge readers' links."""


def development_host(base_url: str) -> bool:
    """localhost, 127.0.0.1 or [::1] exactly, or a placeholder host (see `placeholder`)."""
    host = urlsplit(base_url).hostname or ""
    return host in DEVELOPMENT_HOSTS or placeholder(host)


def placeholder(domain: str) -> bool:
    """example.com or a name under it, label by label: ``myexample.com`` is a real domain someone owns,
    and ``example.com.evil.org`` is not under example.com."""
    domain = domain.lower().rstrip(".")
    return domain == PLACEHOLDER_DOMAIN or domain.endswith("." + PLACEHOLDER_DOMAIN)
