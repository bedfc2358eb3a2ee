"""`verdicts database copy`: a SQLite site moves to PostgreSQL (to another SQLite file where no
server is given) with every row, ids kept, and carries on there."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel, select

from pipeline.config import get_settings
from pipeline.content.votes import record_vote
from pipeline.delivery.events import record_events
from pipeline.delivery.providers.base import EventKind, ProviderEvent
from pipeline.email.render import reader_url
from pipeline.ops import heartbeat
from pipeline.store import copying
from pipeline.store.db import get_engine, session_scope, upgrade
from pipeline.store.models import (
    ClickCount,
    Delivery,
    EditorAccount,
    EditorSession,
    IssueApproval,
    IssueComment,
    Role,
    Tool,
    utcnow,
)
from pipeline.web.ratelimit import SlidingWindow
from subscribers import consent, privacy, service
from subscribers.models import Subscriber
from subscribers.tokens import UNSUBSCRIBE, VoteClaim, read_token
from tests.conftest import POSTGRES, _admin, _database_url


@pytest.fixture
def site(verdicts, tmp_path, monkeypatch) -> str:
    """A SQLite site after a week: the demo's issue sent, a vote, a bounce, a suppressed address."""
    url = f"sqlite:///{tmp_path / 'site.db'}"
    monkeypatch.setenv("VERDICTS_DATABASE_URL", url)
    monkeypatch.setenv("VERDICTS_WEBHOOK_URL", "https://site.example.com/hooks")  # events queued for the site
    monkeypatch.setenv("VERDICTS_WEBHOOK_SECRET", "site-shared-secret")
    assert verdicts("demo").code == 0
    settings = get_settings()
    with session_scope(url) as session:
        delivery = session.exec(select(Delivery)).first()
        tool = session.exec(select(Tool)).first()
        tool_comparison = tool.comparison_id
        record_vote(session, VoteClaim(delivery.subscriber_id, tool.id, delivery.issue_id), "ship")
        record_events(
            session,
            "postmark",
            [ProviderEvent("ev-1", EventKind.bounced, delivery.email, delivery_id=delivery.id)],
            settings,
        )
        record_events(session, "mailgun", [], settings, nonce="token-1")  # a spent signature token
        # A reader who signed up and pressed Confirm: their welcome email is queued.
        joined = service.sign_up(session, "joined@example.com", "Jo", consent.Evidence(source="form")).subscriber
        service.confirm(session, joined.id, consent.Evidence(source="email"))
    assert verdicts("subscribers", "suppress", "trap@example.com", "--reason", "complaint").code == 0
    # What a running site also holds: a sign-up limit's hits, an editor's session, the scheduler's last beat.
    assert SlidingWindow(url, "signup-ip", 10, 3600).allow("203.0.113.9")
    now = utcnow()
    with session_scope(url) as session:
        session.add(EditorSession(token_hash="0" * 64, csrf="c", password_fingerprint="f" * 64, expires_at=now))
        # A personal account, its session, a comment and an approval.
        account = EditorAccount(email="chief@example.com", role=Role.admin, password_hash="$argon2id$x")
        session.add(account)
        session.flush()
        session.add(
            EditorSession(
                token_hash="1" * 64, csrf="d", password_fingerprint="e" * 16, expires_at=now, account_id=account.id
            )
        )
        issue_id = session.exec(select(Delivery)).first().issue_id
        session.add(IssueComment(issue_id=issue_id, revision=1, author="chief@example.com (admin)", text="Good"))
        session.add(
            IssueApproval(issue_id=issue_id, revision=1, actor="chief@example.com (admin)", account_id=account.id)
        )
        session.add(ClickCount(issue_id=issue_id, comparison_id=tool_comparison, day=now.date(), clicks=3))
    heartbeat.save(url, owner="host:1", started_at=now, beat_at=now)
    assert verdicts("api-token", "create", "site", "--scope", "issues:read").code == 0
    return url


@pytest.fixture
def target(tmp_path):
    """A new, empty database: on the PostgreSQL server when the suite has one."""
    if not POSTGRES:
        yield f"sqlite:///{tmp_path / 'moved.db'}"
        return
    name = f"t_{uuid.uuid4().hex[:16]}"
    _admin(f"CREATE DATABASE {name}")
    yield _database_url(name)
    get_engine(_database_url(name)).dispose()
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def rows(url: str) -> dict[str, list[tuple]]:
    """Every table's rows as the code reads them (typed), in id order: comparable across SQLite and PostgreSQL."""
    with get_engine(url).connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
            for t in SQLModel.metadata.sorted_tables
        }


def test_a_site_moves_with_every_row_and_carries_on_in_the_new_database(verdicts, site, target, monkeypatch):
    before = rows(site)
    assert all(before.values()), [name for name, r in before.items() if not r]  # every table has something to copy

    moved = verdicts("database", "copy", target)

    assert moved.code == 0 and f"Copied {sum(map(len, before.values())):,} rows" in moved.out
    assert rows(target) == before and rows(site) == before  # the source is only read
    monkeypatch.setenv("VERDICTS_DATABASE_URL", target)
    assert "sent 5" in verdicts("issue", "show", "1").out.replace(",", "")
    assert verdicts("subscribers", "add", "new@example.com").code == 0  # ids go on after the copied ones
    with session_scope(target) as session:
        ids = [s.id for s in session.exec(select(Subscriber).order_by(Subscriber.id))]
    assert ids[-1] == max(ids[:-1]) + 1
    assert (
        "on the suppression list (they marked a newsletter as spam"
        in verdicts("subscribers", "add", "trap@example.com").err
    )


def test_a_database_that_holds_a_site_is_refused_and_left_as_it_was(verdicts, site, target, monkeypatch, tmp_path):
    assert verdicts("database", "copy", target).code == 0
    monkeypatch.setenv("VERDICTS_DATABASE_URL", target)
    verdicts("subscribers", "add", "later@example.com")
    kept = rows(target)
    monkeypatch.setenv("VERDICTS_DATABASE_URL", site)

    again = verdicts("database", "copy", target)
    held = again.err.partition("already holds rows (")[2].partition(")")[0].split(", ")
    assert again.code == 1 and {"comparison", "issue", "subscriber"} <= set(held) and "new, empty database" in again.err
    assert rows(target) == kept
    itself = verdicts("database", "copy", f"sqlite:///{tmp_path / 'site.db'}")
    assert itself.code == 4 and "the target is the database being copied" in itself.err
    assert verdicts("database", "copy", "sqlite://nowhere.db").err.startswith(
        "error: the target URL: a SQLite URL has three slashes"
    )


def test_a_copy_that_fails_halfway_leaves_the_target_without_rows(verdicts, site, target, monkeypatch):
    monkeypatch.setattr(copying, "ROUND", 3)
    calls = []

    def fail_halfway(done: int, total: int) -> None:
        calls.append(done)
        if done > total // 2:
            raise RuntimeError("the disk filled up")

    with pytest.raises(RuntimeError):
        copying.copy_database(site, target, fail_halfway)
    assert len(calls) > 3 and not any(rows(target).values())
    assert verdicts("database", "copy", target).code == 0  # and it can be copied into afterwards
    assert rows(target) == rows(site)


def test_the_copy_reads_one_round_at_a_time(site, target, monkeypatch):
    """A million readers must not be held at once: rows reach the target in rounds of ROUND."""
    monkeypatch.setattr(copying, "ROUND", 4)
    seen: list[int] = []
    copying.copy_database(site, target, lambda done, total: seen.append(done))
    steps = [b - a for a, b in zip([0, *seen], seen, strict=False)]
    assert max(steps) == 4 and seen[-1] == sum(map(len, rows(site).values()))


def test_the_target_url_is_checked_like_the_setting(verdicts, site):
    result = verdicts("database", "copy", "mysql://db/verdicts")
    assert result.code == 1 and result.err.startswith("error: the target URL: the 'mysql' database is not supported")


def test_an_unreachable_target_is_named_as_the_target(verdicts, site):
    result = verdicts("database", "copy", "postgresql+psycopg://verdicts:secret@127.0.0.1:1/moved")
    assert result.code == 5 and "cannot open the database postgresql+psycopg://127.0.0.1:1/moved" in result.err
    assert "check the target URL and that the server is running" in result.err and "secret" not in result.err


@pytest.mark.skipif(not POSTGRES, reason="SQLite does not enforce column sizes: runs in the PostgreSQL pass")
def test_a_row_sqlite_let_in_but_postgresql_refuses_is_named_without_its_values(verdicts, site, target):
    with get_engine(site).begin() as conn:
        conn.execute(sa.text("UPDATE subscriber SET name = :long WHERE id = 2"), {"long": "Secret Name " * 30})
    result = verdicts("database", "copy", target)
    assert (
        result.code == 4
        and "the target refused subscriber id 2 (name is 360 characters, the column holds 200)" in result.err
    )
    assert "Secret Name" not in result.err and "@example.com" not in result.err and len(result.err.splitlines()) <= 3
    assert not any(rows(target).values())


def test_rows_written_to_the_source_during_the_copy_are_counted_not_half_copied(site, target, monkeypatch):
    """The web app left running: the copy stays one consistent moment, and says what it missed."""
    monkeypatch.setattr(copying, "ROUND", 2)

    written: list[int] = []

    def suppress_meanwhile(done: int, total: int) -> None:
        if not written:  # once, after the first round (whichever table it was)
            written.append(done)
            with get_engine(site).begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO suppression (email_hash, reason, created_at) "
                        "VALUES ('late', 'admin', '2026-11-28 00:00:00')"
                    )
                )

    copied = copying.copy_database(site, target, suppress_meanwhile)
    assert copying.written_since(site, copied) == 1
    assert len(rows(target)["suppression"]) == len(rows(site)["suppression"]) - 1


@pytest.mark.skipif(not POSTGRES, reason="a PostgreSQL server's own refusals: runs in the PostgreSQL pass")
def test_a_target_database_that_does_not_exist_says_to_create_it(verdicts, site):
    missing = _database_url(f"t_missing_{uuid.uuid4().hex[:8]}")
    result = verdicts("database", "copy", missing)
    assert (
        result.code == 3
        and "does not exist; check the target URL and that the database exists (create it first" in result.err
    )


@pytest.fixture
def new_database(tmp_path):
    """``new_database("sqlite" | "postgresql")``: a URL to a new, empty database (PostgreSQL ones dropped after)."""
    made: list[str] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        if not POSTGRES:
            pytest.skip("needs VERDICTS_TEST_POSTGRES")
        name = f"t_{uuid.uuid4().hex[:16]}"
        _admin(f"CREATE DATABASE {name}")
        made.append(name)
        return _database_url(name)

    yield make
    for name in made:
        get_engine(_database_url(name)).dispose()
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _sign_up(url: str, address: str) -> int:
    with session_scope(url) as session:
        return service.add_subscriber(session, address, confirmed=True).subscriber.id


@pytest.mark.parametrize(
    ("source_kind", "target_kind"),
    [("sqlite", "sqlite"), ("sqlite", "postgresql"), ("postgresql", "sqlite"), ("postgresql", "postgresql")],
)
def test_an_erased_readers_id_is_never_handed_to_a_new_reader_after_a_copy(
    workdir, new_database, source_kind, target_kind
):
    """The erased reader's old signed links carry their id: the next sign-up must not get it, before the copy or
    after it (the copy once restarted each counter at the highest id left, not at the highest ever handed out)."""
    source, target = new_database(source_kind), new_database(target_kind)
    upgrade(source)
    ids = [_sign_up(source, f"reader{i}@example.org") for i in range(3)]
    old_link = reader_url(get_settings(), UNSUBSCRIBE, ids[-1])
    with session_scope(source) as session:
        privacy.erase(session, session.get(Subscriber, ids[-1]), consent.Evidence("page"))

    copying.copy_database(source, target)
    newcomer = _sign_up(target, "newcomer@example.org")

    erased = read_token(get_settings().secret_key.get_secret_value(), UNSUBSCRIBE, old_link.rsplit("/", 1)[1])
    assert erased == ids[-1] and newcomer == ids[-1] + 1
    with session_scope(target) as session:
        assert session.get(Subscriber, erased) is None  # the old link finds nobody, as it did before the copy
    assert _sign_up(source, "newcomer@example.org") == ids[-1] + 1  # and no id is reused without a copy either
