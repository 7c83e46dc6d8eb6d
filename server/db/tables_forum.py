"""Tables of the community's forum (registered on the one metadata of server/db/tables.py).

Counters (a category's threads and replies, a thread's replies, views and score, a reply's score)
are columns updated in the same transaction as the row that changes them, so lists never count.
Threads list by keyset per category and "pinned" (pinned threads come first), one index per sort.
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.tables import _created, _id, _user_fk, metadata
from server.db.types import BigId, UtcDateTime

ACCESS_RULES = ("everyone", "members", "moderator", "admin")
_RULES_SQL = ",".join(f"'{rule}'" for rule in ACCESS_RULES)

forum_categories = sa.Table(
    "forum_categories",
    metadata,
    _id(),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("slug", sa.String(64), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("view", sa.String(16), nullable=False, server_default="everyone"),
    sa.Column("post", sa.String(16), nullable=False, server_default="members"),
    sa.Column("threads", sa.Integer(), nullable=False, server_default="0"),  # live (not deleted) threads
    sa.Column("replies", sa.Integer(), nullable=False, server_default="0"),  # live replies of live threads
    sa.Column("last_activity_at", UtcDateTime(), nullable=True),
    _created(),
    sa.UniqueConstraint("slug"),  # serves forum.slug_taken
    sa.CheckConstraint(f"view IN ({_RULES_SQL})", name="view"),
    sa.CheckConstraint(f"post IN ({_RULES_SQL})", name="post"),
)

forum_threads = sa.Table(
    "forum_threads",
    metadata,
    _id(),
    sa.Column("category_id", BigId, sa.ForeignKey("forum_categories.id", ondelete="CASCADE"), nullable=False),
    _user_fk("author_id", nullable=True, ondelete="SET NULL"),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),  # Markdown source
    sa.Column("html", sa.Text(), nullable=False),  # its sanitized rendering (rendered once, on write)
    sa.Column("score", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("replies", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("views", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("locked", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("edited_at", UtcDateTime(), nullable=True),
    _created(),
    sa.Column("last_activity_at", UtcDateTime(), nullable=False),
)
# serve forum.threads_latest / _top / _new: keyset pages per category, pinned ones first
sa.Index("ix_forum_threads_latest", forum_threads.c.category_id, forum_threads.c.pinned,
         forum_threads.c.last_activity_at, forum_threads.c.id)
sa.Index("ix_forum_threads_top", forum_threads.c.category_id, forum_threads.c.pinned,
         forum_threads.c.score, forum_threads.c.id)
sa.Index("ix_forum_threads_new", forum_threads.c.category_id, forum_threads.c.pinned,
         forum_threads.c.created_at, forum_threads.c.id)

forum_replies = sa.Table(
    "forum_replies",
    metadata,
    _id(),
    sa.Column("thread_id", BigId, sa.ForeignKey("forum_threads.id", ondelete="CASCADE"), nullable=False),
    _user_fk("author_id", nullable=True, ondelete="SET NULL"),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("html", sa.Text(), nullable=False),
    sa.Column("score", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("edited_at", UtcDateTime(), nullable=True),
    _created(),
)
sa.Index("ix_forum_replies_thread_id_id", forum_replies.c.thread_id, forum_replies.c.id)  # serves forum.replies

forum_votes = sa.Table(  # one vote per member per thread or reply; changing it updates the row
    "forum_votes",
    metadata,
    sa.Column("target_kind", sa.String(8), nullable=False),
    sa.Column("target_id", BigId, nullable=False),
    _user_fk(),
    sa.Column("value", sa.SmallInteger(), nullable=False),
    _created(),
    # the key serves forum.my_votes (target ids of a page for one member) and the vote upsert
    sa.PrimaryKeyConstraint("target_kind", "target_id", "user_id"),
    sa.CheckConstraint("target_kind IN ('thread','reply')", name="target_kind"),
    sa.CheckConstraint("value IN (-1, 1)", name="value"),
)

forum_edits = sa.Table(  # the version an edit replaced
    "forum_edits",
    metadata,
    _id(),
    sa.Column("target_kind", sa.String(8), nullable=False),
    sa.Column("target_id", BigId, nullable=False),
    _user_fk("editor_id", nullable=True, ondelete="SET NULL"),
    sa.Column("title", sa.String(200), nullable=True),  # threads only
    sa.Column("body", sa.Text(), nullable=False),
    _created(),  # when it was replaced
    sa.CheckConstraint("target_kind IN ('thread','reply')", name="target_kind"),
)
sa.Index("ix_forum_edits_target_kind_target_id_id", forum_edits.c.target_kind, forum_edits.c.target_id,
         forum_edits.c.id)  # serves forum.edits

forum_watchers = sa.Table(
    "forum_watchers",
    metadata,
    sa.Column("thread_id", BigId, sa.ForeignKey("forum_threads.id", ondelete="CASCADE"), nullable=False),
    _user_fk(),
    _created(),
    sa.PrimaryKeyConstraint("thread_id", "user_id"),  # serves forum.watchers and forum.watching
)

forum_views = sa.Table(  # one row per member and thread: a view counts again an hour after the last
    "forum_views",
    metadata,
    sa.Column("thread_id", BigId, sa.ForeignKey("forum_threads.id", ondelete="CASCADE"), nullable=False),
    _user_fk(),
    sa.Column("viewed_at", UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("thread_id", "user_id"),  # serves forum.view (upsert)
)
