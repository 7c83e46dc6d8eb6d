"""XP: one transaction table is the truth (an award is idempotent per user, action and source),
`users.xp`/`users.level` are its running totals; ranks (donor ranks and the like) assigned by admins.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "xp_transactions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_xp_transactions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_xp_transactions")),
        sa.UniqueConstraint("user_id", "action", "source_id", name=op.f("uq_xp_transactions_user_id_action_source_id")),
    )
    op.create_index("ix_xp_transactions_created_at_user_id", "xp_transactions", ["created_at", "user_id"])
    op.create_table(
        "ranks",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("colour", sa.String(length=7), nullable=False),
        sa.Column("badge", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ranks")),
        sa.UniqueConstraint("name", name=op.f("uq_ranks_name")),
    )
    op.add_column("users", sa.Column("rank_id", BigId, nullable=True))  # plain ADD COLUMN (see 0006)
    op.create_index("ix_users_xp", "users", ["xp"])


def downgrade() -> None:
    op.drop_index("ix_users_xp", table_name="users")
    op.execute("ALTER TABLE users DROP COLUMN rank_id")
    op.drop_table("ranks")
    op.drop_index("ix_xp_transactions_created_at_user_id", table_name="xp_transactions")
    op.drop_table("xp_transactions")
