"""Engine and sessions; the schema is owned by Alembic and applied by ``verdicts init``."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlmodel import Session
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from pipeline.errors import VerdictsError
from pipeline.resources import shipped_folder

MIGRATIONS_DIR = shipped_folder("pipeline.store", "migrations")
#: The newest migration (a test keeps it equal to Alembic's head). Every command checks the
#: schema against it with one query; importing Alembic for that took a tenth of a second.
SCHEMA_REVISION = "0007"


log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class DatabaseNotReady(VerdictsError):
    """The database has no schema, or an old one."""


class DatabaseUnreachable(DatabaseNotReady):
    """The server did not answer (not up yet, restarting): worth waiting for, unlike a wrong schema."""


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
            # 32 MB of page cache (the default is 2 MB): a big send updates every ledger row twice.
            cur.execute("PRAGMA cache_size=-32768")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def keyset_pages(session: Session, query: sa.Select, key: sa.ColumnElement[int], page: int = 1000) -> Iterator[sa.Row]:
    """The rows of ``query`` in ``key`` order, ``page`` at a time, each page picked by ``key`` greater
    than the last one seen: memory stays flat, and a page costs the same at the end of a million
    rows as at the start (an OFFSET rescans every row before it)."""
    last = None
    while True:
        rows = session.exec((query if last is None else query.where(key > last)).order_by(key).limit(page)).all()
        yield from rows
        if len(rows) < page:
            return
        last = rows[-1]._mapping[key]


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


@contextmanager
def write_scope(url: str) -> Iterator[Session]:
    """``session_scope`` for a short write a reader's click makes (a vote, an unsubscribe). On SQLite the
    writers of every process take turns through a lock file, then ``BEGIN IMMEDIATE``: SQLite's own busy
    handler polls with sleeps of up to 100 ms, so during a burst of clicks one waited over a second, while
    the kernel wakes the next writer on a lock file the moment the last one commits."""
    if not url.startswith("sqlite"):
        with session_scope(url) as session:
            yield session
        return
    with _writers_turn(url), session_scope(url) as session:
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session


@contextmanager
def _writers_turn(url: str) -> Iterator[None]:
    fd = os.open(f"{sa.make_url(url).database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the GIL; closing the file ends the turn
        yield
    finally:
        os.close(fd)


def dialect_insert(dialect_name: str, table: sa.Table | type) -> sa.Insert:
    """The INSERT of the database in use (PostgreSQL's or SQLite's), which has ``on_conflict_do_…``."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if dialect_name == "postgresql" else sqlite).insert(table)


@lru_cache
def _insert_ignoring_duplicates(dialect_name: str, table: sa.Table) -> sa.Insert:
    return dialect_insert(dialect_name, table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def insert_ignoring_duplicates(session: Session, table: sa.Table) -> sa.Insert:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING <key>`` in the session's dialect, to run with a row's values:
    a row another request inserted first is left as it is (no key comes back), with no savepoint to roll back
    to. Built once per table: a click runs it."""
    return _insert_ignoring_duplicates(session.get_bind().dialect.name, table)


def open_transaction(conn: sa.Connection) -> None:
    """Begin the transaction now on SQLite (elsewhere, and when one is open, nothing to do). Python's
    sqlite3 opens one only before a write: reads before it each see their own moment, and a savepoint
    opened before it is a transaction of its own, committed when released, whatever the command then
    does (a sign-up whose confirmation then failed stayed written)."""
    if conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:
        conn.exec_driver_sql("BEGIN")


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """``session.begin_nested()`` that nests on SQLite too: undone alone on error, kept only if the
    command's transaction is."""
    open_transaction(session.connection())
    with session.begin_nested():
        yield


def upgrade(url: str, setting: str = "VERDICTS_DATABASE_URL") -> str:
    """Create or upgrade the schema to the newest migration; returns the revision. ``setting``
    is where the URL came from, for the error to name."""
    from alembic import command  # only `verdicts init` and tests migrate
    from alembic.config import Config

    engine = get_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    require_known(engine, setting)
    try:
        command.upgrade(cfg, "head")
    except sa.exc.DatabaseError as exc:
        raise _cannot_open(engine, exc, setting) from None
    return current_revision(engine) or ""


def current_revision(engine: sa.Engine) -> str | None:
    """The revision Alembic recorded, or None for a database it never touched."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def require_schema(url: str) -> None:
    """Refuse to run against a database `verdicts init` has not prepared."""
    engine = get_engine(url)
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path and not Path(path).exists():
        # Checked first: connecting would leave an empty file behind, and a typo in the path would go unnoticed.
        raise DatabaseNotReady(
            f"there is no database at {Path(path).resolve()}: run `verdicts init` to create one, or check VERDICTS_DATABASE_URL"
        )
    rev = require_known(engine)
    if rev is None:
        raise DatabaseNotReady("the database has no tables yet: run `verdicts init`")
    if rev != SCHEMA_REVISION:
        raise DatabaseNotReady(f"the database schema is at {rev}, not the newest: run `verdicts init` to upgrade")


def require_known(engine: sa.Engine, setting: str = "VERDICTS_DATABASE_URL") -> str | None:
    """The database's revision, if this code knows it: a schema a newer version made (a deploy rolled
    back) cannot be upgraded, and must not be written by code that does not know it."""
    try:
        rev = current_revision(engine)
    except sa.exc.DatabaseError as exc:
        raise _cannot_open(engine, exc, setting) from None
    if rev is not None and rev not in _known_revisions():
        raise DatabaseNotReady(
            f"the database schema is at {rev}, which this version does not know (the newest it knows is "
            f"{SCHEMA_REVISION}): a newer version of verdicts made it; run that version, or restore a backup"
        )
    return rev


@lru_cache(maxsize=1)
def _known_revisions() -> frozenset[str]:
    """The revisions this code's migrations name (their files start with them), read once per process."""
    return frozenset(path.name.partition("_")[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))


def shown_url(url: str | sa.URL) -> str:
    """The database a URL names, without its user, password or options: what output may print.
    A SQLite path is shown resolved: a service started from another folder looks elsewhere."""
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite":
        return f"{url.drivername}:///{Path(url.database or '').resolve()}"
    where = f"{url.host}:{url.port}" if url.port else url.host or ""
    return f"{url.drivername}://{where}/{url.database or ''}"


def _cannot_open(
    engine: sa.Engine, exc: sa.exc.DatabaseError, setting: str = "VERDICTS_DATABASE_URL"
) -> DatabaseNotReady:
    lines = str(exc.orig).strip().splitlines()
    reason = lines[0] if lines else type(exc.orig).__name__
    if engine.dialect.name != "sqlite":
        check = next((hint for phrase, hint in _SERVER_HINTS if phrase in reason), "that the server is running")
    elif "not a database" in reason:
        check = "that it names a SQLite database file"
    else:
        check = "that its folder exists and this user may write there"
    kind = DatabaseUnreachable if transient(exc) else DatabaseNotReady
    return kind(f"cannot open the database {shown_url(engine.url)}: {reason}; check {setting} and {check}")


#: What PostgreSQL said, and the check that fixes it: the server answered, so "is it running" would mislead.
_SERVER_HINTS = (
    ("does not exist", "that the database exists (create it first: CREATE DATABASE …)"),
    ("password authentication failed", "the user and password in it (an '@' in the password is written %40)"),
    ("permission denied", "that its user may create tables there (make it the database's owner)"),
)

#: What a server that is restarting (or refusing connections for a moment) says, in psycopg's words.
_GONE = (
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "could not connect",
    "the database system is",
    "connection is closed",
    "consuming input failed",
    "connection timeout expired",
)


def transient(exc: BaseException) -> bool:
    """Worth waiting for: the server went away (restart, failover), or SQLite stayed locked past
    its busy timeout. Anything else (a constraint, a bad statement) is a real error."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        text = str(exc.orig).lower()
        return "database is locked" in text or any(phrase in text for phrase in _GONE)
    return False


def retrying(
    session: Session, seconds: float, step: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run one ledger step, again after a transient database error, for up to ``seconds``. Every
    step is one short transaction whose rerun is harmless, so a send outlives a database restart."""

    def _again(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "the database is unavailable (%s); trying again (attempt %d)",
            str(exc).splitlines()[0][:200],
            state.attempt_number,
        )
        try:
            session.rollback()
        except sa.exc.DBAPIError:  # the old connection is gone; the pool opens a new one
            pass

    for attempt in Retrying(
        retry=retry_if_exception(transient),
        stop=stop_after_delay(seconds),
        reraise=True,
        wait=wait_exponential(multiplier=0.1, max=5.0),
        before_sleep=_again,
    ):
        with attempt:
            return step(session, *args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises
