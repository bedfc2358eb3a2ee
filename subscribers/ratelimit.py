"""A sliding-window limiter for sign-ups: per IP and per address, so a form cannot list-bomb anyone.

In memory, per process: enough for one web process; several processes each keep their own
window (the per-address limit then multiplies by the process count).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class SlidingWindow:
    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one hit for ``key``; False when it is over the limit (the hit is not counted)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self.seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True

    def count(self, key: str) -> int:
        """Hits for ``key`` inside the window, without counting one."""
        now = time.monotonic()
        with self._lock:
            return sum(1 for t in self._hits.get(key, ()) if t > now - self.seconds)

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)
