"""The schema belongs to Alembic: `init` creates it, and the migrations match the models."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel, select

from pipeline.content.votes import reader_votes
from pipeline.store.db import MIGRATIONS_DIR, SCHEMA_REVISION, current_revision, get_engine, shown_url
from pipeline.store.models import Tool
from tests.conftest import comparison, write_json


def test_migrations_create_every_table_and_match_the_models(settings):
    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert {"comparison", "tool", "review", "issue", "issue_item", "delivery", "subscriber"} <= tables
    assert diff == [], f"models changed without a migration: {diff}"


def test_the_schema_every_command_requires_is_the_newest_migration(settings):
    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == SCHEMA_REVISION
    assert current_revision(get_engine(settings.database_url)) == SCHEMA_REVISION


def test_one_delivery_per_issue_and_reader_is_enforced_by_the_database(settings):
    engine = get_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO subscriber (id, email, name, status, source, created_at) "
                "VALUES (1, 'a@example.com', '', 'confirmed', 'cli', '2026-11-25')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO issue (id, week, status, subject, preheader, intro, cutoff, more_count, created_at) "
                "VALUES (1, '2026-W48', 'approved', 's', '', '', '2026-11-25', 0, '2026-11-25')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO delivery (issue_id, subscriber_id, email, status, attempts) "
                "VALUES (1, 1, 'a@example.com', 'pending', 0)"
            )
        )
    with engine.begin() as conn:
        try:
            conn.execute(
                sa.text(
                    "INSERT INTO delivery (issue_id, subscriber_id, email, status, attempts) "
                    "VALUES (1, 1, 'a@example.com', 'pending', 0)"
                )
            )
        except sa.exc.IntegrityError:
            return
    raise AssertionError("a second delivery row for the same reader and issue was accepted")


def _migrate(url: str, direction: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = get_engine(url)
    getattr(command, direction)(cfg, revision)


def test_a_database_with_votes_from_before_the_vote_indexes_upgrades_with_every_vote_counted(
    settings, session, verdicts, workdir
):
    """0003 replaced the vote indexes: a list that voted under 0002 keeps every vote, and `verdicts init`
    upgrades it."""
    assert (
        verdicts(
            "comparisons",
            "import",
            str(write_json(workdir / "c.json", [comparison("a-vs-b", datetime(2026, 11, 20, tzinfo=UTC))])),
        ).code
        == 0
    )
    assert verdicts("issue", "build", "--now", "2026-11-21T09:00:00+00:00").code == 0
    alpha, beta = session.exec(select(Tool).order_by(Tool.id)).all()
    _migrate(
        settings.database_url, "downgrade", "0002"
    )  # 0004's downgrade rebuilds `issue` on SQLite: its items must survive
    with get_engine(settings.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM issue_item")).scalar() == 1
    refused = verdicts("issue", "list")
    assert refused.code != 0 and "schema is at 0002" in refused.err and "verdicts init" in refused.err
    with get_engine(settings.database_url).begin() as conn:
        conn.execute(
            sa.text("INSERT INTO vote (tool_id, verdict, voted_at) VALUES (:t, :v, '2026-11-21')"),
            [{"t": alpha.id, "v": "ship"}] * 3 + [{"t": alpha.id, "v": "skip"}, {"t": beta.id, "v": "skip"}],
        )
    result = verdicts("init")
    assert result.code == 0, result.err
    session.expire_all()
    assert reader_votes(session, [alpha.id, beta.id]) == {alpha.id: (3, 1), beta.id: (0, 1)}
    with get_engine(settings.database_url).connect() as conn:
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("vote")}
    assert indexes["ix_vote_tool_verdict"] == ["tool_id", "verdict"] and indexes["ix_vote_issue_tool"] == [
        "issue_id",
        "tool_id",
    ]


def test_a_file_that_is_not_a_database_is_named_as_such(verdicts, workdir, monkeypatch):
    notes = workdir / "notes.txt"
    notes.write_text("not a database, just notes\n" * 100)
    monkeypatch.setenv("VERDICTS_DATABASE_URL", f"sqlite:///{notes}")
    for command in (("issue", "list"), ("init",)):
        result = verdicts(*command)
        assert (
            result.code == 3
            and "file is not a database" in result.err
            and "that it names a SQLite database file" in result.err
        )
    assert notes.read_text() == "not a database, just notes\n" * 100


def test_a_database_a_newer_version_made_is_neither_used_nor_upgraded(settings, verdicts):
    """A deploy rolled back: `init` must not offer to upgrade what it cannot, and nothing may write to it."""
    engine = get_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    for command in (("issue", "list"), ("init",)):
        result = verdicts(*command)
        assert result.code == 3 and "schema is at 0099, which this version does not know" in result.err, result.err
        assert "run that version, or restore a backup" in result.err
    assert current_revision(engine) == "0099"


def test_output_names_a_database_without_its_credentials_and_a_sqlite_file_by_its_full_path(
    verdicts, workdir, monkeypatch
):
    monkeypatch.setenv(
        "VERDICTS_DATABASE_URL", "sqlite:///verdicts-here.db"
    )  # relative: to the folder the command runs in
    done = verdicts("init")
    assert (
        done.code == 0
        and f"Database ready at schema {SCHEMA_REVISION} (sqlite:///{workdir / 'verdicts-here.db'})" in done.out
    )
    assert (
        shown_url("postgresql+psycopg://ed:hunter2@db.internal:5432/verdicts?sslmode=require&password=x")
        == "postgresql+psycopg://db.internal:5432/verdicts"
    )
