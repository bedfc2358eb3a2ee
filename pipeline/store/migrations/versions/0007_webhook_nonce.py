"""Spent webhook signature tokens in their own table (they were stored as events of kind "other")

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 07:30:00
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_nonce",
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("nonce", sa.String(length=200), nullable=False),
        sa.Column("spent_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "nonce"),
    )


def downgrade() -> None:
    op.drop_table("webhook_nonce")
