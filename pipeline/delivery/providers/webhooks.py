"""Small checks every provider's webhook reading uses: secrets, freshness, and a JSON reader
that turns every malformed body into one ``ValueError`` (answered 400), never a crash."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from pipeline.delivery.providers.base import WebhookRejected


def require_secret(secret: SecretStr | str | None, variable: str) -> str:
    """Without its secret a webhook cannot be verified, so it is refused, never trusted."""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not value:
        raise WebhookRejected(f"webhooks from this provider are not configured: set {variable}")
    return value


def require_fresh(timestamp: str | int | float | None, max_age: int, max_ahead: int) -> None:
    """A signed timestamp older than the provider's retries can be, or from the future beyond clock
    skew, is refused. Replays inside the window are caught by the stored event ids, not here."""
    try:
        age = time.time() - float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WebhookRejected("the webhook timestamp is missing or not a number") from None
    if not math.isfinite(age) or not -max_ahead <= age <= max_age:  # "nan" parses, and compares false
        raise WebhookRejected(f"the webhook timestamp is {age:.0f}s old (allowed: {-max_ahead}s to {max_age}s)")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"the payload holds {name}, which is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"the payload holds the number {text[:40]}, too large for a float")
    return value


def load_json(body: bytes | str) -> Any:
    """Strict JSON (UTF-8, finite numbers); nesting too deep for the parser is a ValueError too."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("the payload is nested too deeply") from None


def parse_time(value: object) -> datetime | None:
    """ISO 8601 strings and Unix times, as aware UTC datetimes; anything else (or out of range) is None."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str) and value:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def text(value: object) -> str | None:
    """A payload field that should be a string: anything else counts as absent."""
    return value if isinstance(value, str) and value else None


def mapping(value: object) -> dict[str, Any]:
    """A payload field that should be an object: anything else counts as empty."""
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[Any]:
    """A payload field that should be an array: anything else counts as empty."""
    return value if isinstance(value, list) else []
