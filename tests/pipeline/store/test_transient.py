"""`transient()` tells an error worth a rerun from a real one by the drivers' codes, on errors provoked from
real databases: SQLite held by a second writer, and a PostgreSQL server answering in German (its messages
follow lc_messages, so words cannot decide)."""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.store.db import transient
from tests.conftest import POSTGRES


def _raised(run: Callable[[], object]) -> sa.exc.DBAPIError:
    with pytest.raises(sa.exc.DBAPIError) as caught:
        run()
    return caught.value


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, sa.Connection]]:
    """A first writer (plain sqlite3) and a second connection through SQLAlchemy that does not wait."""
    path = tmp_path / "locks.db"
    first = sqlite3.connect(path, isolation_level=None)
    first.execute("PRAGMA journal_mode=WAL")
    first.execute("CREATE TABLE t (x INTEGER PRIMARY KEY)")
    first.execute("INSERT INTO t VALUES (1)")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with engine.connect() as second:
        yield first, second
    first.close()
    engine.dispose()


def test_sqlite_busy_from_a_second_writer_is_transient(sqlite_pair):
    first, second = sqlite_pair
    first.execute("BEGIN IMMEDIATE")
    error = _raised(lambda: second.exec_driver_sql("INSERT INTO t VALUES (2)"))
    assert isinstance(error.orig, sqlite3.Error) and error.orig.sqlite_errorname == "SQLITE_BUSY"
    assert transient(error)


def test_sqlite_busy_snapshot_an_extended_code_is_transient(sqlite_pair):
    first, second = sqlite_pair
    second.exec_driver_sql("BEGIN")
    second.exec_driver_sql("SELECT * FROM t").all()  # reads a snapshot that the next commit makes stale
    first.execute("INSERT INTO t VALUES (2)")
    error = _raised(lambda: second.exec_driver_sql("INSERT INTO t VALUES (3)"))
    assert isinstance(error.orig, sqlite3.Error) and error.orig.sqlite_errorname == "SQLITE_BUSY_SNAPSHOT"
    assert transient(error)


def test_sqlite_locked_table_is_transient(sqlite_pair):
    _, conn = sqlite_pair
    rows = conn.exec_driver_sql("SELECT * FROM t")  # a statement still reading the table
    error = _raised(lambda: conn.exec_driver_sql("DROP TABLE t"))
    rows.close()
    assert isinstance(error.orig, sqlite3.Error) and error.orig.sqlite_errorname == "SQLITE_LOCKED"
    assert transient(error)


def test_sqlite_real_errors_are_not_transient(sqlite_pair):
    _, conn = sqlite_pair
    assert not transient(_raised(lambda: conn.exec_driver_sql("INSERT INTO t VALUES (1)")))  # UNIQUE
    assert not transient(_raised(lambda: conn.exec_driver_sql("SELECT * FROM missing")))
    # The words alone, without SQLite's code, are not enough.
    assert not transient(sa.exc.OperationalError("UPDATE …", {}, sqlite3.OperationalError("database is locked")))


# PostgreSQL: each case runs with the server's messages in English and in German.


@pytest.fixture(params=["C", "de_DE.UTF-8"])
def pg(request) -> Iterator[Callable[[], sa.Connection]]:
    """Connections to a fresh table ``t`` whose server messages are in the parametrised language."""
    if not POSTGRES:
        pytest.skip("needs VERDICTS_TEST_POSTGRES")
    engine = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    opened: list[sa.Connection] = []

    def connect() -> sa.Connection:
        conn = engine.connect()
        opened.append(conn)
        try:
            conn.exec_driver_sql(f"SET lc_messages TO '{request.param}'")
        except sa.exc.DBAPIError:
            pytest.skip(f"the server has no {request.param} locale (scripts/postgres-server.sh builds one)")
        return conn

    setup = connect()
    setup.exec_driver_sql("DROP TABLE IF EXISTS transient_t")
    setup.exec_driver_sql("CREATE TABLE transient_t (id INTEGER PRIMARY KEY, n INTEGER)")
    setup.exec_driver_sql("INSERT INTO transient_t VALUES (1, 0), (2, 0)")
    yield connect
    for conn in opened:
        conn.invalidate()
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS transient_t")
    engine.dispose()


def _in_language(error: sa.exc.DBAPIError, lc_messages: str, english: str) -> None:
    """The server really spoke the language asked for: else the case proves nothing about words."""
    assert (english in str(error.orig)) == (lc_messages == "C"), str(error.orig)


def test_postgres_serialization_failure_is_transient(pg, request):
    loser, winner = pg(), pg()
    loser.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
    loser.exec_driver_sql("SELECT n FROM transient_t WHERE id = 1").all()
    winner.exec_driver_sql("UPDATE transient_t SET n = 1 WHERE id = 1")
    error = _raised(lambda: loser.exec_driver_sql("UPDATE transient_t SET n = 2 WHERE id = 1"))
    assert getattr(error.orig, "sqlstate", None) == "40001"
    _in_language(error, request.node.callspec.params["pg"], "could not serialize")
    assert transient(error)


def test_postgres_deadlock_is_transient(pg, request):
    first, second = pg(), pg()
    for conn in (first, second):
        conn.exec_driver_sql("SET deadlock_timeout = '50ms'")
        conn.exec_driver_sql("BEGIN")
    first.exec_driver_sql("UPDATE transient_t SET n = 1 WHERE id = 1")
    second.exec_driver_sql("UPDATE transient_t SET n = 1 WHERE id = 2")
    errors: list[sa.exc.DBAPIError] = []

    def cross(conn: sa.Connection, row: int) -> None:
        try:
            conn.exec_driver_sql(f"UPDATE transient_t SET n = 2 WHERE id = {row}")
        except sa.exc.DBAPIError as exc:
            errors.append(exc)
            conn.exec_driver_sql("ROLLBACK")  # frees the row the other one waits for

    waiter = threading.Thread(target=cross, args=(second, 1))
    waiter.start()
    cross(first, 2)
    waiter.join(10)
    assert len(errors) == 1 and getattr(errors[0].orig, "sqlstate", None) == "40P01"
    _in_language(errors[0], request.node.callspec.params["pg"], "deadlock detected")
    assert transient(errors[0])


def test_postgres_terminated_backend_is_transient(pg, request):
    victim, admin = pg(), pg()
    pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid}, 5000)")
    error = _raised(lambda: victim.exec_driver_sql("SELECT 1"))
    assert transient(error)


def test_postgres_real_errors_are_not_transient(pg, request):
    conn = pg()
    duplicate = _raised(lambda: conn.exec_driver_sql("INSERT INTO transient_t VALUES (1, 0)"))
    assert getattr(duplicate.orig, "sqlstate", None) == "23505" and not transient(duplicate)
    _in_language(duplicate, request.node.callspec.params["pg"], "duplicate key")
    assert not transient(_raised(lambda: conn.exec_driver_sql("SELECT * FROM no_such_table")))
    assert not transient(_raised(lambda: conn.exec_driver_sql("SELECT 1/0")))


def test_postgres_refusals_while_connecting():
    """Connecting has no SQLSTATE (libpq keeps only the text): a server that is not there is worth waiting
    for; a database that does not exist is not."""
    if not POSTGRES:
        pytest.skip("needs VERDICTS_TEST_POSTGRES")
    url = sa.make_url(POSTGRES)
    missing = sa.create_engine(url.set(database="no_such_database_here"))
    assert not transient(_raised(missing.connect))
    with socket_closed_port() as port:
        nobody = sa.create_engine(url.set(port=port), connect_args={"connect_timeout": 2})
        assert transient(_raised(nobody.connect))


@contextmanager
def socket_closed_port() -> Iterator[int]:
    """A loopback port nothing listens on, for as long as the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        yield sock.getsockname()[1]
