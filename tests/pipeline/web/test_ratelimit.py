"""The shared sliding window: exact under parallel hits on separate connections (as separate processes
make them), its release and reset, and expired rows purged, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from pipeline.store.db import get_engine
from pipeline.store.models import RateLimit
from pipeline.web.ratelimit import SlidingWindow


def _table(settings) -> list:
    with get_engine(settings.database_url).connect() as conn:
        return conn.execute(sa.select(RateLimit.__table__)).all()


def test_parallel_hits_on_separate_connections_never_pass_the_limit(settings):
    windows = [SlidingWindow(settings.database_url, "signup-address", 5, 3600) for _ in range(2)]  # two "processes"
    with ThreadPoolExecutor(16) as pool:
        allowed = list(pool.map(lambda i: windows[i % 2].allow("victim@example.com"), range(40)))
    assert allowed.count(True) == 5
    [row] = _table(settings)
    assert len(row.hits) == 5 and "victim" not in row.key_hash and row.bucket == "signup-address"


def test_release_gives_back_one_hit_and_reset_clears_the_key(settings):
    window = SlidingWindow(settings.database_url, "login", 2, 900)
    assert window.allow("203.0.113.9") and window.allow("203.0.113.9") and not window.allow("203.0.113.9")
    window.release("203.0.113.9")
    assert window.allow("203.0.113.9") and not window.allow("203.0.113.9")
    # Another limit with the same key counts apart.
    assert SlidingWindow(settings.database_url, "signup-ip", 1, 900).allow("203.0.113.9")
    window.reset("203.0.113.9")
    assert window.allow("203.0.113.9")


def test_hits_leave_the_window_and_expired_rows_are_purged(settings):
    short = SlidingWindow(settings.database_url, "signup-ip", 1, 0.5)
    assert short.allow("a") and not short.allow("a")
    assert SlidingWindow(settings.database_url, "signup-ip", 1, 3600).allow("b")
    time.sleep(0.6)
    assert short.purge() == 1  # a's row expired; b's stays
    assert [row.bucket for row in _table(settings)] == ["signup-ip"]
    assert short.allow("a")
