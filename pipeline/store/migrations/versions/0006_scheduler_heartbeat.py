"""The scheduler's heartbeat: each beat, its next and last run and the last run's outcome

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 04:00:01
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeat",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("beat_at", UTCDateTime(), nullable=False),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("next_run_at", UTCDateTime(), nullable=True),
        sa.Column("next_poll_at", UTCDateTime(), nullable=True),
        sa.Column("last_run_due", UTCDateTime(), nullable=True),
        sa.Column("last_run_job", sa.String(length=20), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("last_run_finished_at", UTCDateTime(), nullable=True),
        sa.Column(
            "last_run_outcome",
            sa.Enum("running", "ok", "failed", "stopped", name="runoutcome", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("last_run_message", sa.String(length=1000), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("heartbeat")
