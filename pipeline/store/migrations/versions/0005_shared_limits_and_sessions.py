"""Rate-limit hits and editor sessions kept in the database, so they hold across processes and machines

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 04:00:00
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=20), nullable=False),
        sa.Column("hits", sa.JSON(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_hash"),
    )
    # Expired rows are deleted by this index alone.
    op.create_index("ix_rate_limit_expires_at", "rate_limit", ["expires_at"], unique=False)
    op.create_table(
        "editor_session",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("password_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_editor_session_expires_at", "editor_session", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_editor_session_expires_at", table_name="editor_session")
    op.drop_table("editor_session")
    op.drop_index("ix_rate_limit_expires_at", table_name="rate_limit")
    op.drop_table("rate_limit")
