"""Engine and sessions; the schema is owned by Alembic and applied by ``verdicts init``."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, TypeVarTuple, cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapped
from sqlmodel import Session, SQLModel
from sqlmodel.sql.expression import Select
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_exponential

from pipeline.errors import VerdictsError
from pipeline.resources import shipped_folder

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.sql.dml import ReturningInsert

MIGRATIONS_DIR = shipped_folder("pipeline.store", "migrations")
#: The newest migration (a test keeps it equal to Alembic's head). Every command checks the
#: schema against it with one query; importing Alembic for that took a tenth of a second.
SCHEMA_REVISION = "0011"


log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


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
        def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
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


def keyset_pages(
    session: Session, query: Select[*Ts], key: sa.ColumnElement[Any] | Mapped[Any], page: int = 1000
) -> Iterator[sa.Row[*Ts]]:
    """The rows of ``query`` in ``key`` order, ``page`` at a time, each page picked by ``key`` greater
    than the last one seen: memory stays flat, and a page costs the same at the end of a million
    rows as at the start (an OFFSET rescans every row before it)."""
    last: Any = None
    while True:
        page_query = (query if last is None else query.where(key > last)).order_by(key).limit(page)
        rows = cast("Sequence[sa.Row[*Ts]]", session.exec(page_query).all())  # rows, whatever sqlmodel says
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


def dialect_insert(dialect_name: str, table: sa.Table | type) -> postgresql.Insert | sqlite.Insert:
    """The INSERT of the database in use (PostgreSQL's or SQLite's), which has ``on_conflict_do_…``."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert(table) if dialect_name == "postgresql" else sqlite.insert(table)


@lru_cache
def _insert_ignoring_duplicates(dialect_name: str, model: type[SQLModel]) -> ReturningInsert[*tuple[Any, ...]]:
    return dialect_insert(dialect_name, model).on_conflict_do_nothing().returning(*sa.inspect(model).primary_key)


def insert_ignoring_duplicates(session: Session, model: type[SQLModel]) -> ReturningInsert[*tuple[Any, ...]]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING <key>`` into ``model``'s table in the session's dialect, to run
    with a row's values: a row another request inserted first is left as it is (no key comes back), with no
    savepoint to roll back to. Built once per table: a click runs it."""
    return _insert_ignoring_duplicates(session.get_bind().dialect.name, model)


def open_transaction(conn: sa.Connection) -> None:
    """Begin the transaction now on SQLite (elsewhere, and when one is open, nothing to do). Python's
    sqlite3 opens one only before a write: reads before it each see their own moment, and a savepoint
    opened before it is a transaction of its own, committed when released, whatever the command then
    does (a sign-up whose confirmation then failed stayed written)."""
    dbapi = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite" and dbapi is not None and not dbapi.in_transaction:
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
            f"there is no database at {Path(path).resolve()}: run `verdicts init` to create one, "
            "or check VERDICTS_DATABASE_URL"
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
        check = _server_hint(exc.orig) or "that the server is running"
    elif "not a database" in reason:
        check = "that it names a SQLite database file"
    else:
        check = "that its folder exists and this user may write there"
    kind = DatabaseUnreachable if transient(exc) else DatabaseNotReady
    return kind(f"cannot open the database {shown_url(engine.url)}: {reason}; check {setting} and {check}")


#: The check that fixes what PostgreSQL said, by SQLSTATE: the server answered, so "is it running" would mislead.
_HINTS_BY_CODE = {
    "3D000": "that the database exists (create it first: CREATE DATABASE …)",  # invalid_catalog_name
    "28P01": "the user and password in it (an '@' in the password is written %40)",  # invalid_password
    "42501": "that its user may create tables there (make it the database's owner)",  # insufficient_privilege
}
#: A refusal while connecting comes without a SQLSTATE (libpq keeps only the text), so those are known by the
#: server's words; a server speaking another language is then waited for, up to DB_RETRY_SECONDS, and its
#: own words still name the fault.
_HINTS_BY_TEXT = {
    "does not exist": _HINTS_BY_CODE["3D000"],
    "password authentication failed": _HINTS_BY_CODE["28P01"],
    "permission denied": _HINTS_BY_CODE["42501"],
}


def _server_hint(error: BaseException | None) -> str | None:
    code = getattr(error, "sqlstate", None)
    if code is not None:
        return _HINTS_BY_CODE.get(code)
    return next((hint for phrase, hint in _HINTS_BY_TEXT.items() if phrase in str(error)), None)


#: PostgreSQL's SQLSTATEs worth running the step again for, besides class 08 (connection exception). Codes,
#: not messages: the server writes its messages in its lc_messages language.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure: a concurrent transaction won; the rerun sees its result
        "40P01",  # deadlock_detected: this transaction was the one rolled back
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown: the server is stopping (a restart, a failover)
        "57P02",  # crash_shutdown: another backend crashed; the server restarts
        "57P03",  # cannot_connect_now: starting up, shutting down or in recovery
    }
)
#: SQLite's primary result codes for "another connection holds the lock", past the busy timeout;
#: an extended code (SQLITE_BUSY_SNAPSHOT 517, SQLITE_LOCKED_SHAREDCACHE 262, …) keeps its primary in the low byte.
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def transient(exc: BaseException) -> bool:
    """Worth waiting for: the server went away (restart, failover), a concurrent transaction won, or
    SQLite stayed locked past its busy timeout. Anything else (a constraint, a bad statement) is a real
    error. Decided by the drivers' error codes, never by their messages' words."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    error = exc.orig
    if isinstance(error, sqlite3.Error):
        return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
    if not hasattr(error, "sqlstate"):  # not psycopg's: no code to go by
        return False
    code: str | None = getattr(error, "sqlstate", None)
    if code is None:
        # psycopg's own error (libpq's, not the server's): the connection failed or was lost, unless the
        # server refused it for good (a refusal while connecting has no SQLSTATE either).
        return isinstance(exc, sa.exc.OperationalError) and _server_hint(error) is None
    return code.startswith("08") or code in _TRANSIENT_SQLSTATES


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
        with suppress(sa.exc.DBAPIError):  # the old connection is gone; the pool opens a new one
            session.rollback()

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
