"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 11:48:20.852162
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import pipeline.store.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "comparison",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("question", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("published_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("imported_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("updated_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    with op.batch_alter_table("comparison", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comparison_published_at"), ["published_at"], unique=False)

    op.create_table(
        "issue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("week", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column(
            "status",
            sa.Enum("draft", "approved", "sending", "sent", name="issuestatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("preheader", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("intro", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("cutoff", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("more_count", sa.Integer(), nullable=False),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("approved_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("scheduled_for", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("send_started_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("sent_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("week"),
    )
    op.create_table(
        "subscriber",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "confirmed", "unsubscribed", name="subscriberstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("unsubscribed_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("paused_until", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("confirmation_sent_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("soft_bounces", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_status"), ["status"], unique=False)

    op.create_table(
        "suppression",
        sa.Column("email_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("email_hash"),
    )
    op.create_table(
        "consent_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("email_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "event",
            sa.Enum(
                "signup",
                "confirm",
                "withdraw",
                "resubscribe",
                "erase",
                name="consentevent",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("wording_version", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consent_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_record_email_hash"), ["email_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_consent_record_subscriber_id"), ["subscriber_id"], unique=False)

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                "unknown",
                "suppressed",
                name="deliverystatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("claimed_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("provider_message_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_id", "subscriber_id"),
    )
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_issue_status_id", ["issue_id", "status", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_provider_message_id"), ["provider_message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_subscriber_id"), ["subscriber_id"], unique=False)

    op.create_table(
        "issue_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparison.id"],
        ),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("comparison_id"),
    )
    with op.batch_alter_table("issue_item", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_issue_item_issue_id"), ["issue_id"], unique=False)

    op.create_table(
        "review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("tool_slug", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("lens", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column("quote", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["comparison_id"], ["comparison.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_comparison_id"), ["comparison_id"], unique=False)

    op.create_table(
        "tool",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("tagline", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("entry_price", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("community_ship", sa.Integer(), nullable=True),
        sa.Column("community_skip", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["comparison_id"], ["comparison.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("comparison_id", "slug"),
    )
    with op.batch_alter_table("tool", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tool_comparison_id"), ["comparison_id"], unique=False)

    op.create_table(
        "delivery_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.Column("received_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "event_id"),
    )
    with op.batch_alter_table("delivery_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_event_delivery_id"), ["delivery_id"], unique=False)

    op.create_table(
        "vote",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tool_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column("voted_at", pipeline.store.models.UTCDateTime(), nullable=False),
        sa.Column("changed_at", pipeline.store.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tool_id"], ["tool.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tool_id", "subscriber_id"),
    )
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vote_issue_id"), ["issue_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_vote_tool_id"), ["tool_id"], unique=False)

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table("vote", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vote_tool_id"))
        batch_op.drop_index(batch_op.f("ix_vote_issue_id"))

    op.drop_table("vote")
    with op.batch_alter_table("delivery_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_event_delivery_id"))

    op.drop_table("delivery_event")
    with op.batch_alter_table("tool", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_comparison_id"))

    op.drop_table("tool")
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_comparison_id"))

    op.drop_table("review")
    with op.batch_alter_table("issue_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_issue_item_issue_id"))

    op.drop_table("issue_item")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_provider_message_id"))
        batch_op.drop_index("ix_delivery_issue_status_id")

    op.drop_table("delivery")
    with op.batch_alter_table("consent_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_record_subscriber_id"))
        batch_op.drop_index(batch_op.f("ix_consent_record_email_hash"))

    op.drop_table("consent_record")
    op.drop_table("suppression")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscriber_status"))

    op.drop_table("subscriber")
    op.drop_table("issue")
    with op.batch_alter_table("comparison", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comparison_published_at"))

    op.drop_table("comparison")
    # ### end Alembic commands ###
