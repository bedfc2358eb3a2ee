"""`verdicts database backup`: a SQLite site is copied while another process keeps writing to it, and the copy,
put back as deploy/README.md says, is a working site; on PostgreSQL the command says how to use pg_dump."""

from __future__ import annotations

import csv
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from pipeline.config import get_settings
from pipeline.content.votes import record_vote
from pipeline.errors import EXIT_BAD_DATA
from pipeline.store.db import session_scope
from pipeline.store.models import Delivery, Tool
from subscribers.tokens import VoteClaim
from tests.conftest import POSTGRES, _admin, _database_url

sqlite_only = pytest.mark.skipif(bool(POSTGRES), reason="SQLite's backup; the PostgreSQL run checks the pg_dump advice")

#: Another process signing readers up, one transaction each (the reader and their consent trail), until told to stop.
WRITER = """
import sys
from pathlib import Path
from pipeline.store.db import session_scope
from subscribers.service import add_subscriber

url, stop = sys.argv[1], Path(sys.argv[2])
n = 0
while not stop.exists():
    with session_scope(url) as session:
        add_subscriber(session, f"writer{n:06d}@example.com", f"Writer {n}", confirmed=True)
    n += 1
"""


@pytest.fixture
def site(verdicts, tmp_path) -> str:
    """A site after a week: readers, the demo's issue sent to them, and their votes."""
    assert verdicts("demo").code == 0
    url = get_settings().database_url
    with session_scope(url) as session:
        tool = session.exec(select(Tool)).first()
        for delivery in session.exec(select(Delivery)).all():
            record_vote(session, VoteClaim(delivery.subscriber_id, tool.id, delivery.issue_id), "ship")
    return url


def count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


def restored(verdicts, monkeypatch, backup: Path, folder: Path) -> str:
    """The restore of deploy/README.md: the copy put in place of the database, then `verdicts init`."""
    folder.mkdir()
    shutil.copy(backup, folder / "verdicts.db")
    url = f"sqlite:///{folder / 'verdicts.db'}"
    monkeypatch.setenv("VERDICTS_DATABASE_URL", url)
    assert verdicts("init").code == 0
    return url


def shown(verdicts, monkeypatch, url: str) -> tuple[str, str, str]:
    """What an operator looks at: the issue, the reader list, and every reader exported."""
    monkeypatch.setenv("VERDICTS_DATABASE_URL", url)
    issue, readers = verdicts("issue", "show", "1"), verdicts("subscribers", "list", "--limit", "10000")
    export = verdicts("subscribers", "export")
    assert issue.code == readers.code == export.code == 0, (issue.err, readers.err, export.err)
    return issue.out, readers.out, export.out


@sqlite_only
def test_a_backup_taken_while_readers_sign_up_restores_to_a_working_site(verdicts, site, tmp_path, monkeypatch):
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, site, str(stop)], cwd=Path(__file__).resolve().parents[3])
    try:
        readers = "SELECT count(*) FROM subscriber WHERE email LIKE 'writer%'"
        deadline = time.monotonic() + 60
        while count(site, readers) < 30 and time.monotonic() < deadline and writer.poll() is None:
            time.sleep(0.05)
        before = count(site, readers)
        taken = verdicts("database", "backup", str(tmp_path / "during.db"))
        after = count(site, readers)
        while count(site, readers) < after + 30 and time.monotonic() < deadline and writer.poll() is None:
            time.sleep(0.05)  # the writer was not held up: it carries on after the backup
        assert count(site, readers) >= after + 30
    finally:
        stop.touch()
        assert writer.wait(timeout=30) == 0

    assert taken.code == 0, taken.err
    assert f"to {tmp_path / 'during.db'}" in taken.out and "integrity check ok" in taken.out
    assert (tmp_path / "during.db").stat().st_mode & 0o777 == 0o600  # readers' addresses: the owner's alone
    assert not list(tmp_path.glob(".during.db.*"))  # no temporary file left behind
    url = restored(verdicts, monkeypatch, tmp_path / "during.db", tmp_path / "restored-during")
    # One moment of the site: every reader the writer had committed by then, each with their whole consent trail.
    emails = [row["email"] for row in csv.DictReader(shown(verdicts, monkeypatch, url)[2].splitlines())]
    written = [e for e in emails if e.startswith("writer")]
    assert before <= len(written) <= after and written == [f"writer{n:06d}@example.com" for n in range(len(written))]
    trails = count(url, "SELECT count(*) FROM consent_record WHERE email LIKE 'writer%'")
    assert trails == 2 * len(written)  # each reader's sign-up and confirmation
    assert shown(verdicts, monkeypatch, url)[0] == shown(verdicts, monkeypatch, site)[0]  # the issue, sent, its counts

    # Quiet, the copy is the site exactly: the same issue, readers and votes; and the restored site takes new readers.
    monkeypatch.setenv("VERDICTS_DATABASE_URL", site)
    assert verdicts("database", "backup", str(tmp_path / "quiet.db")).code == 0
    url = restored(verdicts, monkeypatch, tmp_path / "quiet.db", tmp_path / "restored-quiet")
    assert shown(verdicts, monkeypatch, url) == shown(verdicts, monkeypatch, site)
    assert count(url, "SELECT count(*) FROM vote") == count(site, "SELECT count(*) FROM vote") > 0
    monkeypatch.setenv("VERDICTS_DATABASE_URL", url)
    assert verdicts("subscribers", "add", "after-restore@example.com", "--confirmed").code == 0


@sqlite_only
def test_an_existing_file_is_kept_unless_force_and_replaced_only_by_a_checked_copy(verdicts, site, tmp_path):
    target = tmp_path / "backup.db"
    target.write_text("last week's backup")

    refused = verdicts("database", "backup", str(target))

    assert refused.code == EXIT_BAD_DATA and f"{target} exists" in refused.err and "--force" in refused.err
    assert target.read_text() == "last week's backup"
    assert verdicts("database", "backup", str(target), "--force").code == 0
    with sqlite3.connect(target) as copy:
        copied = copy.execute("SELECT count(*) FROM subscriber").fetchone()[0]
    assert copied == count(site, "SELECT count(*) FROM subscriber")


@sqlite_only
@pytest.mark.parametrize(
    "where, message",
    [
        ("verdicts.db", "is the database being backed up"),
        ("verdicts.db-wal", "is the database being backed up"),
        ("missing-folder/backup.db", "cannot write the backup there (No such file or directory)"),
        (".", "is a folder: name the file to write"),
    ],
)
def test_a_target_that_cannot_be_written_is_a_one_line_error_and_changes_nothing(
    verdicts, site, tmp_path, where, message
):
    before = sorted(p.name for p in tmp_path.iterdir())
    database = (tmp_path / "verdicts.db").read_bytes()

    result = verdicts("database", "backup", str(tmp_path / where), "--force")

    assert result.code != 0 and message in result.err and len(result.err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "verdicts.db").read_bytes() == database


@sqlite_only
def test_a_damaged_database_is_reported_and_never_replaces_a_good_backup(verdicts, site, tmp_path):
    good = tmp_path / "backup.db"
    assert verdicts("database", "backup", str(good)).code == 0
    kept = good.read_bytes()
    with sqlite3.connect(tmp_path / "verdicts.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself, none newer in the WAL
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'ix_subscriber_status'").fetchone()
    with (tmp_path / "verdicts.db").open("r+b") as db:  # the end of an index page, where its entries are
        db.seek(root * page_size - 200)
        db.write(b"\xff" * 200)

    result = verdicts("database", "backup", str(good), "--force")

    assert result.code != 0 and "fails SQLite's integrity check" in result.err and "nothing was written" in result.err
    assert good.read_bytes() == kept and not list(tmp_path.glob(".backup.db.*"))


@sqlite_only
def test_root_is_told_to_run_it_as_the_sites_user(verdicts, site, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can be the wrong user here")
    os.chown(tmp_path / "verdicts.db", 65534, 65534)  # as if it were the service's

    result = verdicts("database", "backup", str(tmp_path / "backup.db"))

    # Root's SQLite would leave root's -wal and -shm files the service could not open.
    assert result.code == 3 and "belongs to another user" in result.err and "runuser -u nobody" in result.err
    assert not (tmp_path / "backup.db").exists()


def test_on_postgresql_it_says_the_pg_dump_command_and_writes_nothing(verdicts, workdir, tmp_path, monkeypatch):
    # The suite's own database on its second run (with a password added: the command never connects), else another.
    elsewhere = "postgresql+psycopg://verdicts@db.internal:5433/verdicts"
    parsed = sa.make_url(os.environ["VERDICTS_DATABASE_URL"] if POSTGRES else elsewhere)
    parsed = parsed.set(password="s3cret-never-shown")
    monkeypatch.setenv("VERDICTS_DATABASE_URL", parsed.render_as_string(hide_password=False))
    target = tmp_path / "site.dump"

    result = verdicts("database", "backup", str(target))

    assert result.code == 1 and not target.exists()  # not a backup: a timer running it must not count it as one
    where = f"{parsed.username}@{parsed.host}:{parsed.port}/{parsed.database}"
    assert f"pg_dump --format=custom --file={target} postgresql://{where}" in result.err
    assert "s3cret" not in result.err and "pg_restore" in result.err


@pytest.mark.skipif(not POSTGRES, reason="needs the PostgreSQL server of the suite's second run")
def test_the_pg_dump_command_it_gives_backs_up_a_site_that_restores(verdicts, site, tmp_path, monkeypatch):
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if not (pg_dump and pg_restore):
        pytest.skip("pg_dump is not installed (Debian: postgresql-client)")
    target = tmp_path / "site.dump"
    advice = verdicts("database", "backup", str(target)).err
    command = advice[advice.index("pg_dump ") : advice.index(" (it asks")]
    password = {"PGPASSWORD": sa.make_url(site).password or ""}
    subprocess.run(command, shell=True, check=True, env={**os.environ, **password}, timeout=120)
    name = f"restored_{os.getpid()}"
    _admin(f"CREATE DATABASE {name}")
    try:
        new = _database_url(name)
        libpq = sa.make_url(new).set(drivername="postgresql").render_as_string(hide_password=False)
        subprocess.run([pg_restore, "--no-owner", f"--dbname={libpq}", str(target)], check=True, timeout=120)
        assert shown(verdicts, monkeypatch, new) == shown(verdicts, monkeypatch, site)
    finally:
        from pipeline.store.db import get_engine

        get_engine(_database_url(name)).dispose()
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
