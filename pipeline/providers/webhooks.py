"""Small checks every provider's webhook verification uses."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

from pydantic import SecretStr

from pipeline.providers.base import WebhookRejected


def require_secret(secret: SecretStr | str | None, variable: str) -> str:
    """Without its secret a webhook cannot be verified, so it is refused, never trusted."""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not value:
        raise WebhookRejected(f"webhooks from this provider are not configured: set {variable}")
    return value


def require_fresh(timestamp: str | int | float | None, max_age: int) -> None:
    """Replays of an old, validly signed request are refused."""
    try:
        age = abs(time.time() - float(timestamp))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WebhookRejected("the webhook timestamp is missing or not a number") from None
    if not math.isfinite(age) or age > max_age:  # "nan" parses, and no comparison with it is ever true
        raise WebhookRejected(f"the webhook timestamp is {age:.0f}s away from now (limit {max_age}s)")


def parse_time(value: object) -> datetime | None:
    """ISO 8601 strings and Unix times, as aware UTC datetimes."""
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None
