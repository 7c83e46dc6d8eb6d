"""Moderation: sanctions (timed or permanent mutes and bans, in a room or site-wide), reports, and
slow mode per room.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("channels", sa.Column("slow_mode_seconds", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "sanctions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("channel_id", BigId, nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_by", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", BigId, nullable=True),
        sa.CheckConstraint("kind IN ('mute','ban')", name=op.f("ck_sanctions_kind")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sanctions_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"], name=op.f("fk_sanctions_channel_id_channels"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_sanctions_created_by_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["lifted_by"], ["users.id"], name=op.f("fk_sanctions_lifted_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sanctions")),
    )
    op.create_index("ix_sanctions_user_id_lifted_at", "sanctions", ["user_id", "lifted_at"])
    op.create_table(
        "reports",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("reporter_id", BigId, nullable=True),
        sa.Column("target_user_id", BigId, nullable=True),
        sa.Column("channel_id", BigId, nullable=True),
        sa.Column("message_offset", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="open"),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolved_by", BigId, nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('open','resolved')", name=op.f("ck_reports_status")),
        sa.ForeignKeyConstraint(["reporter_id"], ["users.id"], name=op.f("fk_reports_reporter_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["target_user_id"], ["users.id"], name=op.f("fk_reports_target_user_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"], name=op.f("fk_reports_channel_id_channels"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["resolved_by"], ["users.id"], name=op.f("fk_reports_resolved_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    op.create_index("ix_reports_status_id", "reports", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_reports_status_id", table_name="reports")
    op.drop_table("reports")
    op.drop_index("ix_sanctions_user_id_lifted_at", table_name="sanctions")
    op.drop_table("sanctions")
    op.execute("ALTER TABLE channels DROP COLUMN slow_mode_seconds")
