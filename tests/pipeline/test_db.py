"""The schema belongs to Alembic: `init` creates it, and the migrations match the models."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from pipeline.db import MIGRATIONS_DIR, SCHEMA_REVISION, current_revision, get_engine


def test_migrations_create_every_table_and_match_the_models(settings):
    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert {"comparison", "tool", "review", "issue", "issue_item", "delivery", "subscriber"} <= tables
    assert diff == [], f"models changed without a migration: {diff}"


def test_the_schema_every_command_requires_is_the_newest_migration(settings):
    assert SCHEMA_REVISION == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert current_revision(get_engine(settings.database_url)) == SCHEMA_REVISION


def test_one_delivery_per_issue_and_reader_is_enforced_by_the_database(settings):
    engine = get_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO subscriber (id, email, name, status, source, created_at) VALUES (1, 'a@example.com', '', 'confirmed', 'cli', '2026-11-25')"))
        conn.execute(sa.text("INSERT INTO issue (id, week, status, subject, preheader, intro, cutoff, more_count, created_at) VALUES (1, '2026-W48', 'approved', 's', '', '', '2026-11-25', 0, '2026-11-25')"))
        conn.execute(sa.text("INSERT INTO delivery (issue_id, subscriber_id, email, status, attempts) VALUES (1, 1, 'a@example.com', 'pending', 0)"))
    with engine.begin() as conn:
        try:
            conn.execute(sa.text("INSERT INTO delivery (issue_id, subscriber_id, email, status, attempts) VALUES (1, 1, 'a@example.com', 'pending', 0)"))
        except sa.exc.IntegrityError:
            return
    raise AssertionError("a second delivery row for the same reader and issue was accepted")
