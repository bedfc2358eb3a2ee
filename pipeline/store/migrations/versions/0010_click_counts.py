"""Clicks on "Read the full comparison", counted per issue, comparison and day (no reader id)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "click_count",
        sa.Column("issue_id", sa.Integer(), sa.ForeignKey("issue.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("comparison_id", sa.Integer(), sa.ForeignKey("comparison.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("clicks", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("click_count")
