"""Where each sign-up came from (page, utm_*, referrer) on its consent record; reader interests and referrer

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite rebuilds the table to add the foreign key: it must keep AUTOINCREMENT (ids are never reused).
    with op.batch_alter_table("subscriber", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("interests", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("only_interests", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("referred_by", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_subscriber_referred_by_subscriber", "subscriber", ["referred_by"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_subscriber_referred_by", ["referred_by"])
    with op.batch_alter_table("consent_record") as batch:
        batch.add_column(sa.Column("page", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("utm", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("referrer_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_consent_record_referrer_id_subscriber", "subscriber", ["referrer_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("consent_record") as batch:
        batch.drop_constraint("fk_consent_record_referrer_id_subscriber", type_="foreignkey")
        batch.drop_column("referrer_id")
        batch.drop_column("utm")
        batch.drop_column("page")
    # SQLite rebuilds the table to add the foreign key: it must keep AUTOINCREMENT (ids are never reused).
    with op.batch_alter_table("subscriber", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_index("ix_subscriber_referred_by")
        batch.drop_constraint("fk_subscriber_referred_by_subscriber", type_="foreignkey")
        batch.drop_column("referred_by")
        batch.drop_column("only_interests")
        batch.drop_column("interests")
