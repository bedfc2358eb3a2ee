"""vote: indexes that hold what the vote counts read (tool and verdict; issue and tool)

With 300,000 votes, counting the splits through the old tool index read every vote's row: the
web version of an issue took 201-211 ms, a reader's vote 40 ms and /votes.json 179-192 ms; with
these, 40, 12 and 29 ms (`benchmarks.web_pages`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:00:00
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.create_index("ix_vote_tool_verdict", ["tool_id", "verdict"], unique=False)
        batch_op.create_index("ix_vote_issue_tool", ["issue_id", "tool_id"], unique=False)
        # Both were the first column of a new index, which serves their lookups too.
        batch_op.drop_index("ix_vote_tool_id")
        batch_op.drop_index("ix_vote_issue_id")


def downgrade() -> None:
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.create_index("ix_vote_issue_id", ["issue_id"], unique=False)
        batch_op.create_index("ix_vote_tool_id", ["tool_id"], unique=False)
        batch_op.drop_index("ix_vote_issue_tool")
        batch_op.drop_index("ix_vote_tool_verdict")
