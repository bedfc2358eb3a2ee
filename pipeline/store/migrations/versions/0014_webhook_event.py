"""Webhooks to the site: the persistent queue of events and the log of their delivery

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-19 09:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

from pipeline.store.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

STATUSES = ("pending", "delivered", "failed")


def upgrade() -> None:
    op.create_table(
        "webhook_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column(
            "status", sa.Enum(*STATUSES, name="webhookeventstatus", native_enum=False, length=16), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uid"),
    )
    with op.batch_alter_table("webhook_event") as batch:
        batch.create_index("ix_webhook_event_status_id", ["status", "id"])


def downgrade() -> None:
    op.drop_table("webhook_event")
