"""Engine and sessions; the schema is owned by Alembic and applied by ``verdicts init``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import Session

from pipeline.errors import VerdictsError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class DatabaseNotReady(VerdictsError):
    """The database has no schema, or an old one."""


@lru_cache
def get_engine(url: str) -> sa.Engine:
    """One engine per URL per process; SQLite gets the pragmas a multi-process CLI needs."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers (web app, `issue show`) run while a sender writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on any error (all-or-nothing commands)."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(engine: sa.Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(url: str) -> str:
    """Create or upgrade the schema to the newest migration; returns the revision."""
    engine = get_engine(url)
    command.upgrade(_alembic_config(engine), "head")
    return current_revision(engine) or ""


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@lru_cache
def _head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def require_schema(url: str) -> None:
    """Refuse to run against a database `verdicts init` has not prepared."""
    engine = get_engine(url)
    try:
        rev = current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise DatabaseNotReady(f"cannot open the database {engine.url!r}: {exc.orig}") from None
    if rev is None:
        raise DatabaseNotReady("the database has no tables yet: run `verdicts init`")
    if rev != _head_revision():
        raise DatabaseNotReady(f"the database schema is at {rev}, not the newest: run `verdicts init` to upgrade")
