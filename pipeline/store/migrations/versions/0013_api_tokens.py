"""API tokens for the site's HTTP API: hashed, scoped, revocable, last use recorded

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-14 09:00:00
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store.models import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    # A request's token is found by its first characters, then its hash compared in constant time.
    op.create_index("ix_api_token_prefix", "api_token", ["prefix"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_api_token_prefix", table_name="api_token")
    op.drop_table("api_token")
