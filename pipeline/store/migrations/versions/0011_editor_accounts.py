"""Personal editor accounts with roles, their sessions, comments on issues and approvals per revision

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-13 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "editor_account",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(length=320), nullable=False, unique=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_pending", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
    )
    with op.batch_alter_table("editor_session") as batch:
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_editor_session_account", "editor_account", ["account_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_editor_session_account_id", ["account_id"])
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("changed_by", sa.String(length=400), nullable=True))
    op.create_table(
        "issue_comment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issue_id", sa.Integer(), sa.ForeignKey("issue.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("author", sa.String(length=400), nullable=False),
        sa.Column("text", sa.String(length=4000), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "issue_approval",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issue_id", sa.Integer(), sa.ForeignKey("issue.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=400), nullable=False),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("editor_account.id", ondelete="SET NULL"), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("issue_id", "revision", "actor"),
    )


def downgrade() -> None:
    op.drop_table("issue_approval")
    op.drop_table("issue_comment")
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("changed_by")
    with op.batch_alter_table("editor_session") as batch:
        batch.drop_index("ix_editor_session_account_id")
        batch.drop_constraint("fk_editor_session_account", type_="foreignkey")
        batch.drop_column("account_id")
    op.drop_table("editor_account")
