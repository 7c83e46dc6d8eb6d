"""Tables of the community's feed (registered on the one metadata of server/db/tables.py).

Posts and their comments carry their like and comment counts as columns, updated in the same
transaction as the like or comment row that changes them, so a feed page is one indexed range scan
with no aggregation. Deleting is a tombstone (`deleted`): counters, likes and reports keep pointing
at a row that exists, and the lists skip it.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.tables import _created, _id, _user_fk, metadata
from server.db.types import BigId

posts = sa.Table(  # social posts: the friends and everyone feeds, and groups' posts
    "posts",
    metadata,
    _id(),
    _user_fk("author_id"),
    sa.Column("group_id", BigId, nullable=True),  # groups.id (migration 0013): no FK across areas
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("visibility", sa.String(16), nullable=False, server_default="public"),
    sa.Column("image_key", sa.String(64), nullable=True),  # SHA-256 of the 1280 px WebP (media/post_images.py)
    sa.Column("image_width", sa.Integer(), nullable=True),
    sa.Column("image_height", sa.Integer(), nullable=True),
    sa.Column("likes", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("comments", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
    _created(),
    sa.CheckConstraint("visibility IN ('public','friends')", name="visibility"),
)
sa.Index("ix_posts_author_id_id", posts.c.author_id, posts.c.id)  # serves feed.friends (authors IN (...))
# serves feed.group, and feed.everyone (`group_id IS NULL`) when the primary key's newest rows are
# mostly group posts; otherwise that feed walks the primary key backwards (most posts are public)
sa.Index("ix_posts_group_id_id", posts.c.group_id, posts.c.id)

post_comments = sa.Table(
    "post_comments",
    metadata,
    _id(),
    sa.Column("post_id", BigId, sa.ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
    _user_fk("author_id"),
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("likes", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
    _created(),
)
sa.Index("ix_post_comments_post_id_id", post_comments.c.post_id, post_comments.c.id)  # serves feed.comments

feed_likes = sa.Table(  # one like per member per post or comment: the key is the idempotency
    "feed_likes",
    metadata,
    sa.Column("target_kind", sa.String(8), nullable=False),
    sa.Column("target_id", BigId, nullable=False),
    _user_fk(),
    _created(),
    sa.PrimaryKeyConstraint("target_kind", "target_id", "user_id"),  # serves feed.like, feed.liked
    sa.CheckConstraint("target_kind IN ('post','comment')", name="target_kind"),
)

feed_report_targets = sa.Table(  # which post or comment a row of the shared `reports` queue is about
    "feed_report_targets",
    metadata,
    sa.Column("report_id", BigId, sa.ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("target_kind", sa.String(8), nullable=False),
    sa.Column("target_id", BigId, nullable=False),
    sa.CheckConstraint("target_kind IN ('post','comment')", name="target_kind"),
)
