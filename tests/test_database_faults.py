"""Database faults mid-send: SQLite locked by another writer, errors past the busy timeout,
connections lost after a commit, and a PostgreSQL server restarted under a running
`verdicts issue send`. The sender waits, reconnects and finishes: every reader once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from pipeline.delivery.providers import OutboxProvider
from pipeline.delivery.send import send_issue
from pipeline.store.db import session_scope, transient, upgrade
from pipeline.store.models import Delivery, DeliveryStatus
from tests.conftest import POSTGRES, outbox_messages, seed_issue
from tests.fakes.provider_api import TEST_CREDENTIALS, TEST_ENV, FakeProviderAPI, Fault
from tests.fakes.readers import add_readers
from tests.reliability_report import write_reliability

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "scripts" / "postgres-server.sh"
RESULTS: dict[str, str] = {}


def _locked() -> sa.exc.OperationalError:
    """SQLite's own "database is locked" (SQLITE_BUSY), from a real second writer: retried by its code."""
    with tempfile.TemporaryDirectory() as folder:
        holder = sqlite3.connect(Path(folder) / "held.db", isolation_level=None)
        writer = sqlite3.connect(Path(folder) / "held.db", timeout=0)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            writer.execute("CREATE TABLE t (x)")
        except sqlite3.OperationalError as exc:
            return sa.exc.OperationalError("UPDATE delivery …", {}, exc)
        finally:
            writer.close()
            holder.close()
    raise AssertionError("the second writer was not refused")


def _dropped() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "UPDATE delivery …", {}, Exception("server closed the connection unexpectedly"), connection_invalidated=True
    )


def _flaky(monkeypatch, name: str, faults: dict[int, tuple[str, sa.exc.DBAPIError]]) -> list[int]:
    """Make the n-th call of a ledger step fail: "before" it runs, or "after" its commit went through."""
    import pipeline.delivery.send as send_module

    real, calls = getattr(send_module, name), []

    def step(*args, **kwargs):
        calls.append(len(calls) + 1)
        when, error = faults.get(len(calls), ("", None))
        if when == "before":
            raise error
        result = real(*args, **kwargs)
        if when == "after":
            raise error
        return result

    monkeypatch.setattr(send_module, name, step)
    return calls


def test_locked_and_lost_database_steps_are_retried_and_every_reader_gets_one_copy(
    workdir, settings, session, monkeypatch
):
    issue = seed_issue(session, workdir, readers=12)
    settings = settings.model_copy(update={"batch_size": 3, "db_retry_seconds": 10})
    claims = _flaky(monkeypatch, "claim_batch", {2: ("after", _dropped()), 4: ("before", _locked())})
    records = _flaky(monkeypatch, "record_outcomes", {1: ("before", _locked()), 3: ("after", _dropped())})

    summary = send_issue(settings, issue.id, OutboxProvider(settings))

    assert summary.finished and summary.sent == 12 and summary.unknown == 0
    copies = Counter(m["To"].addresses[0].addr_spec for m in outbox_messages(settings, f"{issue.id}-{issue.week}"))
    assert copies == Counter({f"reader{i}@example.com": 1 for i in range(12)})
    with session_scope(settings.database_url) as s:
        assert {d.status for d in s.exec(select(Delivery))} == {DeliveryStatus.sent}
    assert len(claims) >= 6 and len(records) >= 5  # the failed calls were made again
    RESULTS["injected"] = (
        f"| errors injected into ledger steps (in process) | 4 (locked before, connection lost after the commit, "
        f"each on claims and outcomes) | {summary.sent} of 12 | 0 | 0 |"
    )


def test_a_real_error_is_not_retried(workdir, settings, session, monkeypatch):
    issue = seed_issue(session, workdir, readers=3)
    integrity = sa.exc.IntegrityError("INSERT …", {}, Exception("UNIQUE constraint failed"))
    calls = _flaky(monkeypatch, "record_outcomes", {1: ("before", integrity)})
    with pytest.raises(sa.exc.IntegrityError):
        send_issue(settings.model_copy(update={"db_retry_seconds": 10}), issue.id, OutboxProvider(settings))
    assert calls == [1] and not transient(integrity) and transient(_locked()) and transient(_dropped())


def _send_in_background(env: dict[str, str], issue_id: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "issue", "send", str(issue_id)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _slow_send(env_extra: dict[str, str]):
    """A postmark fake answering every request after 0.1 s, batches of 3, and its environment."""
    fake = FakeProviderAPI("postmark", TEST_CREDENTIALS["postmark"])
    fake.fail_next(*[Fault.slow(0.1)] * 500)
    env = {
        **os.environ,
        "VERDICTS_PROVIDER": "postmark",
        "VERDICTS_PROVIDER_BASE_URL": fake.base_url,
        **TEST_ENV["postmark"],
        "VERDICTS_BATCH_SIZE": "3",
        "VERDICTS_PROVIDER_CONCURRENCY": "1",
        **env_extra,
    }
    return fake, env


@pytest.mark.skipif(bool(POSTGRES), reason="SQLite's own lock: runs in the SQLite pass")
def test_sqlite_locked_by_another_writer_mid_send_is_waited_out(workdir, settings, session):
    issue = seed_issue(session, workdir, readers=0)
    add_readers(settings.database_url, 24)
    fake, env = _slow_send({})
    with fake:
        proc = _send_in_background(env, issue.id)
        _wait_for(lambda: len(fake.accepted) >= 3)
        path = sa.make_url(settings.database_url).database
        holder = sqlite3.connect(path, timeout=30)
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database for 2.5 s
        time.sleep(2.5)
        during = len(fake.accepted)
        holder.commit()
        holder.close()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(24)})
    assert during <= 9  # the sender could not claim or record while the lock was held
    RESULTS["sqlite"] = "| SQLite held by another writer (BEGIN EXCLUSIVE) for 2.5 s mid-send | 1 | 24 of 24 | 0 | 0 |"


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of this test's own, so it can be restarted without disturbing the others."""
    started = subprocess.run(["bash", str(SERVER_SCRIPT), "start"], capture_output=True, text=True)
    if started.returncode:
        pytest.skip(f"no PostgreSQL server here: {started.stderr.strip()}")
    data_dir = started.stderr.split("PostgreSQL data in ", 1)[1].split()[0]
    try:
        yield started.stdout.strip(), data_dir
    finally:
        subprocess.run(["bash", str(SERVER_SCRIPT), "stop", data_dir], capture_output=True)


@pytest.mark.skipif(not POSTGRES, reason="restarts a PostgreSQL server: runs in the PostgreSQL pass")
def test_postgres_restarted_mid_send_the_sender_reconnects_and_finishes(workdir, monkeypatch, private_postgres):
    url, data_dir = private_postgres
    monkeypatch.setenv("VERDICTS_DATABASE_URL", url)
    upgrade(url)
    with session_scope(url) as session:
        issue = seed_issue(session, workdir, readers=0)
    add_readers(url, 30)
    fake, env = _slow_send({"VERDICTS_DATABASE_URL": url})
    with fake:
        proc = _send_in_background(env, issue.id)
        _wait_for(lambda: len(fake.accepted) >= 3)
        restart = threading.Thread(
            target=subprocess.run, args=(["bash", str(SERVER_SCRIPT), "restart", data_dir],), kwargs={"check": True}
        )
        restart.start()
        restart.join(60)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "the database is unavailable" in err  # it noticed, waited and reconnected
    assert Counter(m.to for m in fake.accepted) == Counter({f"reader{i}@example.com": 1 for i in range(30)})
    with session_scope(url) as session:
        assert {d.status for d in session.exec(select(Delivery))} == {DeliveryStatus.sent}
    RESULTS["postgres"] = "| PostgreSQL server restarted (pg_ctl restart -m fast) mid-send | 1 | 30 of 30 | 0 | 0 |"


def test_write_the_database_faults_section():
    """Runs last in this file: the figures of the tests above, into RELIABILITY.md."""
    if not RESULTS:
        pytest.skip("no database fault test ran")
    backend = "postgresql" if POSTGRES else "sqlite"
    write_reliability(
        f"database-{backend}",
        "\n".join(
            [
                f"## Database faults mid-send ({backend} pass)",
                "",
                "| fault | injected | readers with their copy | lost | duplicates |",
                "|---|---|---|---|---|",
                *RESULTS.values(),
            ]
        ),
    )
