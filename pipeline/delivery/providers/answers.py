"""Reading an HTTP API provider's answer: its own words about an error (``detail``), short enough for
a log line, and when it says to try again: ``Retry-After`` and the rate-limit headers a provider
declares (``RateHeaders``). ``http`` decides what to do with them.
"""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class RateHeaders:
    """Where a provider says how much quota is left and when it comes back."""

    remaining: str
    reset: str
    reset_is_epoch: bool  # SendGrid: Unix time; Resend: seconds from now


def header_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds, whether given as a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    return max(0.0, parsed.timestamp() - time.time())


def detail(response: httpx.Response) -> str:
    """The provider's own words about an error, short enough for a log line."""
    try:
        data = response.json()
    except ValueError:
        if "html" in response.headers.get("content-type", ""):
            # A web server's or a proxy's error page: its markup says nothing useful on one log line. A page
            # that does not know the path at all means the request went to a host that is not the API.
            wrong_host = response.status_code in (404, 405)
            return "an HTML page, not the API's answer" + (
                ": check the base URL (VERDICTS_PROVIDER_BASE_URL, VERDICTS_FALLBACK_BASE_URL)" if wrong_host else ""
            )
        return " ".join(response.text.split())[:300]
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "; ".join(str(e.get("message", e)) for e in errors[:3])
        for key in ("Message", "message", "error"):
            if key in data:
                return str(data[key])[:300]
    return json.dumps(data)[:300]
