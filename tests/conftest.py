"""Every test runs in its own folder with its own database and outbox, configured by env."""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.config import Settings, get_settings
from pipeline.store.db import get_engine, session_scope, upgrade

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday in ISO week 2026-W48
#: Set by `make test` when a PostgreSQL server is available (see .ci/run): the whole suite runs
#: again with every test in its own database on that server.
POSTGRES = os.environ.get("VERDICTS_TEST_POSTGRES")


def _admin(sql: str) -> None:
    engine = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _database_url(name: str) -> str:
    return sa.make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def database_url(tmp_path: Path):
    """SQLite in the test's folder, or a new empty PostgreSQL database (each test runs the migrations)."""
    if not POSTGRES:
        yield f"sqlite:///{tmp_path / 'verdicts.db'}"
        return
    name = f"t_{uuid.uuid4().hex[:16]}"
    _admin(f"CREATE DATABASE {name}")
    url = _database_url(name)
    yield url
    get_engine(url).dispose()
    get_engine.cache_clear()
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("VERDICTS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VERDICTS_DATABASE_URL", database_url)
    monkeypatch.setenv("VERDICTS_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("VERDICTS_SECRET_KEY", "test-secret")
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def settings(workdir: Path) -> Settings:
    s = get_settings()
    upgrade(s.database_url)
    return s


@pytest.fixture
def session(settings: Settings):
    with session_scope(settings.database_url) as s:
        yield s


@pytest.fixture
def verdicts(workdir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run the real `verdicts` entry point in-process: exit code, stdout, stderr."""
    from pipeline.cli.main import main

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        monkeypatch.setattr(sys, "argv", ["verdicts", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def comparison(slug: str, published_at: datetime, *, tools: int = 2, title: str | None = None, **extra) -> dict:
    """A valid comparison in the import format."""
    names = ["Alpha", "Beta", "Gamma", "Delta"][:tools]
    item = {
        "slug": slug,
        "question": "Which one should you ship with?",
        "published_at": published_at.isoformat(),
        "url": f"https://verdicts.example.com/compare/{slug}",
        "tools": [
            {
                "slug": n.lower(),
                "name": f"{n} {slug}",
                "category": "Developer Tools",
                "tagline": f"{n} does things",
                "description": f"{n} is a tool.",
                "entry_price": "Free",
                "community_votes": {"ship": 3, "skip": 1} if i == 0 else None,
            }
            for i, n in enumerate(names)
        ],
        "reviews": [
            {"tool": "alpha", "reviewer": "Ana", "lens": "DX", "verdict": "ship", "quote": "Solid primitive."},
            {"tool": "alpha", "reviewer": "Ben", "verdict": "skip", "quote": "Too early."},
            {"tool": "beta", "reviewer": "Ana", "lens": "DX", "verdict": "ship", "quote": "Ship it."},
        ],
    }
    if title:
        item["title"] = title
    item.update(extra)
    return item


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def db_snapshot(url: str) -> dict[str, list]:
    """Every row of every table: to prove a failed command changed nothing."""
    engine = get_engine(url)
    with engine.connect() as conn:
        tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
        return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}")).all()), key=repr) for t in tables}


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def seed_issue(
    session, tmp_path: Path, *, comparisons: int = 3, readers: int = 5, approved: bool = True, items: list | None = None
):
    """Comparisons of this week, confirmed readers, and a built (approved) issue."""
    from zoneinfo import ZoneInfo

    from pipeline.content.importing import load_files, upsert
    from pipeline.content.issues import approve, build_issue
    from subscribers.service import add_subscriber

    items = items or [comparison(f"cmp-{i}", days_ago(1 + i / 10)) for i in range(comparisons)]
    upsert(session, load_files([write_json(tmp_path / "seed.json", items)]))
    for i in range(readers):
        add_subscriber(session, f"reader{i}@example.com", f"Reader {i}", confirmed=True)
    issue = build_issue(session, now=NOW, tz=ZoneInfo("UTC"), max_comparisons=5).issue
    if approved:
        approve(session, issue)
    session.commit()
    return issue


EDITOR_PASSWORD = "correct horse battery staple"


def editor_site(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    readers: int = 1,
    editors: str = "ed@verdicts.example.com",
    **env: str,
) -> tuple[Settings, int]:
    """A site with an editor's password, the test-send addresses, any other ``VERDICTS_*`` settings, and one
    built issue (not approved): the settings and the issue's id."""
    from pipeline.config import get_settings
    from pipeline.store.db import session_scope, upgrade

    monkeypatch.setenv("VERDICTS_EDITOR_PASSWORD", EDITOR_PASSWORD)
    monkeypatch.setenv("VERDICTS_EDITOR_EMAILS", editors)
    for name, value in env.items():
        monkeypatch.setenv(f"VERDICTS_{name}", value)
    get_settings.cache_clear()
    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as session:
        return settings, seed_issue(session, workdir, readers=readers, approved=False).id


@pytest.fixture
def client(settings):
    from fastapi.testclient import TestClient

    from pipeline.web.app import create_app

    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as c:
        yield c


def outbox_messages(settings, folder: str = "confirmations"):
    """The .eml files the outbox wrote to one folder, parsed back with the stdlib, oldest first."""
    import email
    from email.policy import default

    paths = sorted((settings.outbox_dir / folder).glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [email.message_from_bytes(p.read_bytes(), policy=default) for p in paths]


def settled(read, *, seconds: float = 20.0, quiet: float = 0.5):
    """What ``read()`` returns once it is non-empty and has not changed for ``quiet`` seconds. Over real HTTP a
    sign-up is carried out after its answer (a background task): a test waits for that work to land."""
    import time

    deadline = time.monotonic() + seconds
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif value and time.monotonic() - since >= quiet:
            return value
    raise AssertionError(f"still changing, or still empty, after {seconds} s: {value!r}")


def settled_outbox(settings, folder: str = "confirmations"):
    """``outbox_messages`` once the outbox folder has stopped changing (``settled``)."""
    settled(lambda: sorted(p.name for p in (settings.outbox_dir / folder).glob("*.eml")))
    return outbox_messages(settings, folder)


def link_in(msg, path: str) -> str:
    """The first link to ``path`` in the text part of a message."""
    import re

    text = msg.get_body(preferencelist=("plain",)).get_content()
    return re.search(rf"https?://\S+{path}\S+", text).group(0)


def wait_until_serving(base: str, proc, seconds: float, said) -> None:
    """Until the web app in child process ``proc`` answers ``/healthz`` with 200; fails with what it ``said()``
    when it exits first or takes longer than ``seconds``."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"`verdicts serve` did not start: {said()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture
def live_server(workdir, monkeypatch):
    """The real app under uvicorn on a loopback port; BASE_URL points at it so emailed links work."""
    import socket
    import threading
    import time

    import uvicorn

    from pipeline.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("VERDICTS_BASE_URL", base)
    get_settings.cache_clear()
    s = get_settings()
    upgrade(s.database_url)
    server = uvicorn.Server(uvicorn.Config(create_app(s), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield base, s
    server.should_exit = True
    thread.join(timeout=10)


ACCOUNT_PASSWORD = "a long personal password"


def make_account(
    settings: Settings, email: str, role: str, *, password: str | None = ACCOUNT_PASSWORD, totp: bool = False
):
    """A personal editor account straight in the database (argon2id hash; a TOTP secret when ``totp``)."""
    from pipeline.ops import accounts

    with session_scope(settings.database_url) as session:
        account = accounts.add_account(session, email, accounts.parse_role(role))
        if password is not None:
            account.password_hash = accounts.hash_password(password)
        if totp:
            account.totp_secret = accounts.new_totp_secret()
        session.add(account)
        session.flush()
        return account


def account_login(client, email: str, password: str = ACCOUNT_PASSWORD, next_url: str = "/editor"):
    """Log ``client`` in (afresh: its cookies go) with an account's email and password, no second factor: the
    answer (303 when it worked)."""
    import re

    client.cookies.clear()
    form = client.get("/editor/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    return client.post("/editor/login", data={"email": email, "password": password, "csrf": csrf, "next": next_url})
