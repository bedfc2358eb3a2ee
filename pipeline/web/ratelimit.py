"""Sliding-window limits kept in the database: sign-ups per IP and per address, so a form cannot
list-bomb anyone, and failed editor logins per IP.

In the database, not in memory, so every web process and every machine counts the same hits: in
memory each process kept its own count, and two processes let twice the limit through. Each key has
one row, locked while a hit is counted: parallel requests for one key take turns, so none slips past
the limit, on any process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import col

from pipeline.store.db import dialect_insert, get_engine
from pipeline.store.models import RateLimit

log = logging.getLogger(__name__)
#: Expired rows are deleted at most this often per process, in a statement of their own.
PURGE_EVERY_SECONDS = 600.0


def client_key(host: str | None) -> str:
    """What a per-IP limit counts: the IPv4 address, or the IPv6 /64 (one home or server gets a whole
    /64 and could otherwise take a new address per request)."""
    if not host:
        return "?"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped or ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SlidingWindow:
    """At most ``limit`` hits per key in any ``seconds``. ``bucket`` names the limit in the shared table."""

    def __init__(self, database_url: str, bucket: str, limit: int, seconds: float) -> None:
        self.database_url = database_url
        self.bucket = bucket
        self.limit = limit
        self.seconds = seconds
        self._purged = float("-inf")

    def allow(self, key: str) -> bool:
        """Count one hit for ``key``; False when it is over the limit (the hit is not counted)."""
        now = time.time()
        with get_engine(self.database_url).begin() as conn:
            hits = [t for t in self._lock(conn, key, now) if t > now - self.seconds]
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            self._store(conn, key, hits, now)
        if now - self._purged > PURGE_EVERY_SECONDS:
            self._purged = now
            try:
                self.purge()
            except sa.exc.DBAPIError as exc:  # housekeeping: the request it rides on must not fail for it
                log.warning(
                    "could not delete expired rate-limit rows (next try in %d s): %s",
                    PURGE_EVERY_SECONDS,
                    str(exc.orig).strip().splitlines()[0][:200],
                )
        return allowed

    def release(self, key: str) -> None:
        """Give back one hit ``allow`` counted: the request it let through turned out to cost nothing.
        The newest goes: a parallel request's hit, if it came later, which counts the same."""
        now = time.time()
        with get_engine(self.database_url).begin() as conn:
            hits = self._lock(conn, key, now)
            if hits:
                hits.remove(max(hits))
            self._store(conn, key, hits, now)

    def reset(self, key: str) -> None:
        with get_engine(self.database_url).begin() as conn:
            conn.execute(sa.delete(RateLimit).where(col(RateLimit.key_hash) == self._hash(key)))

    def purge(self) -> int:
        """Delete every limit's expired rows; rows another request holds are left for the next purge."""
        expired = (
            sa.select(col(RateLimit.key_hash))
            .where(col(RateLimit.expires_at) < _utc(time.time()))
            .with_for_update(skip_locked=True)
        )
        with get_engine(self.database_url).begin() as conn:
            return conn.execute(sa.delete(RateLimit).where(col(RateLimit.key_hash).in_(expired))).rowcount

    def _hash(self, key: str) -> str:
        # Hashed: the table never holds an address or an IP in the clear.
        return hashlib.sha256(f"{self.bucket}\0{key}".encode()).hexdigest()

    def _lock(self, conn: sa.Connection, key: str, now: float) -> list[float]:
        """The key's hits, its row locked until the transaction ends: one statement that creates the row
        or, if it exists, writes it (a no-op change), which locks it on PostgreSQL and, as the first write,
        takes SQLite's write lock before anything is read."""
        upsert = dialect_insert(conn.dialect.name, RateLimit).values(
            key_hash=self._hash(key), bucket=self.bucket, hits=[], expires_at=_utc(now)
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=[col(RateLimit.key_hash)], set_={"bucket": upsert.excluded.bucket}
        )
        return list(conn.execute(upsert.returning(col(RateLimit.hits))).scalar_one())

    def _store(self, conn: sa.Connection, key: str, hits: list[float], now: float) -> None:
        until = _utc((max(hits) if hits else now) + self.seconds)
        conn.execute(
            sa.update(RateLimit).where(col(RateLimit.key_hash) == self._hash(key)).values(hits=hits, expires_at=until)
        )


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
