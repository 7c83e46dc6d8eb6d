"""The community's feed: posts (public, friends-only or in a group), comments, likes of both, and
which post or comment a report of the shared queue is about. Counters live on the rows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("author_id", BigId, nullable=False),
        sa.Column("group_id", BigId, nullable=True),  # groups come in 0013: no foreign key across areas
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False, server_default="public"),
        sa.Column("image_key", sa.String(length=64), nullable=True),
        sa.Column("image_width", sa.Integer(), nullable=True),
        sa.Column("image_height", sa.Integer(), nullable=True),
        sa.Column("likes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("comments", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        _created(),
        sa.CheckConstraint("visibility IN ('public','friends')", name=op.f("ck_posts_visibility")),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_posts_author_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
    )
    op.create_index("ix_posts_author_id_id", "posts", ["author_id", "id"])
    op.create_index("ix_posts_group_id_id", "posts", ["group_id", "id"])
    op.create_table(
        "post_comments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("post_id", BigId, nullable=False),
        sa.Column("author_id", BigId, nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("likes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        _created(),
        sa.ForeignKeyConstraint(["post_id"], ["posts.id"], name=op.f("fk_post_comments_post_id_posts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_post_comments_author_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_post_comments")),
    )
    op.create_index("ix_post_comments_post_id_id", "post_comments", ["post_id", "id"])
    op.create_table(
        "feed_likes",
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_id", BigId, nullable=False),
        sa.Column("user_id", BigId, nullable=False),
        _created(),
        sa.CheckConstraint("target_kind IN ('post','comment')", name=op.f("ck_feed_likes_target_kind")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_feed_likes_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("target_kind", "target_id", "user_id", name=op.f("pk_feed_likes")),
    )
    op.create_table(
        "feed_report_targets",
        sa.Column("report_id", BigId, nullable=False),
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_id", BigId, nullable=False),
        sa.CheckConstraint("target_kind IN ('post','comment')", name=op.f("ck_feed_report_targets_target_kind")),
        sa.ForeignKeyConstraint(["report_id"], ["reports.id"], name=op.f("fk_feed_report_targets_report_id_reports"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("report_id", name=op.f("pk_feed_report_targets")),
    )


def downgrade() -> None:
    op.drop_table("feed_report_targets")
    op.drop_table("feed_likes")
    op.drop_index("ix_post_comments_post_id_id", table_name="post_comments")
    op.drop_table("post_comments")
    op.drop_index("ix_posts_group_id_id", table_name="posts")
    op.drop_index("ix_posts_author_id_id", table_name="posts")
    op.drop_table("posts")
