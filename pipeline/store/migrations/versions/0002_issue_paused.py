"""issue.paused_reason: a send paused by a long provider outage says why

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:05:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The status column is a VARCHAR without a CHECK list, so the new "paused" value needs no change.
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("paused_reason")
