"""How batches reach the provider: at the configured rate (``Pacer``), through the provider that is
answering (``Carrier``, which fails over to the fallback), with a message the provider cannot build
reported as such (``hand_over``), and the decision after each batch to go on, fail over or stop
(``check_trouble``). The campaign loop (``send``) decides what is claimed and recorded; this module,
who carries it and when.
"""

from __future__ import annotations

import logging
import time

from pipeline.delivery.messages import BUILD_ERRORS, UnbuildableMessage
from pipeline.delivery.providers import (
    OutgoingMessage,
    Provider,
    ProviderConfigError,
    ProviderUnavailable,
    SendOutcome,
)

log = logging.getLogger(__name__)


class Pacer:
    """Keeps the average rate at or below ``rate`` messages per second (0 = unpaced)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self, messages: int) -> None:
        if not self.interval:
            return
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at, time.monotonic()) + messages * self.interval


class Carrier:
    """The provider carrying the send, and the fallback that takes over when it keeps failing.

    Only deferred messages (the provider answered "not now", or never got the request) move
    to the fallback; unknown outcomes never do, so no reader gets a second copy.
    """

    def __init__(self, primary: Provider, fallback: Provider | None, window: float) -> None:
        self.current, self.fallback, self.window = primary, fallback, window
        self.failing_since: float | None = None

    def succeeded(self) -> None:
        self.failing_since = None

    def keep_going(self, error: str) -> bool:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since < self.window:
            return True
        if self.fallback is not None and self.current is not self.fallback:
            log.warning(
                "%s kept failing for %.0fs (%s): the rest of the send goes through %s",
                self.current.name,
                now - self.failing_since,
                error,
                self.fallback.name,
            )
            self.current, self.failing_since = self.fallback, None
            return True
        return False


def hand_over(provider: Provider, messages: list[OutgoingMessage], campaign: str) -> list[SendOutcome]:
    """``send_batch``, with a message the provider could not build reported as such, not as a traceback."""
    try:
        return provider.send_batch(messages, campaign=campaign)
    except BUILD_ERRORS as exc:
        raise UnbuildableMessage(f"{provider.name} could not build a message of this batch ({exc})") from None


def check_trouble(carrier: Carrier, trouble: SendOutcome | None) -> None:
    """Go on, go on through the fallback, or stop: the provider's configuration is wrong, or it
    has been unavailable for longer than FAILOVER_AFTER_SECONDS."""
    if trouble is None:
        carrier.succeeded()
    elif trouble.config_problem:
        raise ProviderConfigError(f"{carrier.current.name}: {trouble.error}")
    elif not carrier.keep_going(trouble.error or "no answer"):
        raise ProviderUnavailable(f"{carrier.current.name} is unavailable ({trouble.error})")
