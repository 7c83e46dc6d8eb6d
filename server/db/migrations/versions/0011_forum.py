"""The community's forum: categories (with view/post rules), threads, replies, votes, the versions
edits replaced, watchers and per-member views; a "General" category to start with.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RULES = "'everyone','members','moderator','admin'"

categories = sa.table(
    "forum_categories",
    sa.column("name", sa.String),
    sa.column("slug", sa.String),
    sa.column("description", sa.Text),
    sa.column("position", sa.Integer),
    sa.column("view", sa.String),
    sa.column("post", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _created() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def _user(name: str, table: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> list[sa.schema.SchemaItem]:
    return [sa.Column(name, BigId, nullable=nullable),
            sa.ForeignKeyConstraint([name], ["users.id"], name=op.f(f"fk_{table}_{name}_users"), ondelete=ondelete)]


def upgrade() -> None:
    op.create_table(
        "forum_categories",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("view", sa.String(length=16), nullable=False, server_default="everyone"),
        sa.Column("post", sa.String(length=16), nullable=False, server_default="members"),
        sa.Column("threads", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("replies", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.CheckConstraint(f"view IN ({RULES})", name=op.f("ck_forum_categories_view")),
        sa.CheckConstraint(f"post IN ({RULES})", name=op.f("ck_forum_categories_post")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_categories")),
        sa.UniqueConstraint("slug", name=op.f("uq_forum_categories_slug")),
    )
    op.create_table(
        "forum_threads",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("category_id", BigId, nullable=False),
        *_user("author_id", "forum_threads", nullable=True, ondelete="SET NULL"),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("replies", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("views", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("locked", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["category_id"], ["forum_categories.id"],
                                name=op.f("fk_forum_threads_category_id_forum_categories"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_threads")),
    )
    op.create_index("ix_forum_threads_latest", "forum_threads", ["category_id", "pinned", "last_activity_at", "id"])
    op.create_index("ix_forum_threads_top", "forum_threads", ["category_id", "pinned", "score", "id"])
    op.create_index("ix_forum_threads_new", "forum_threads", ["category_id", "pinned", "created_at", "id"])
    op.create_table(
        "forum_replies",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("thread_id", BigId, nullable=False),
        *_user("author_id", "forum_replies", nullable=True, ondelete="SET NULL"),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(["thread_id"], ["forum_threads.id"],
                                name=op.f("fk_forum_replies_thread_id_forum_threads"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_replies")),
    )
    op.create_index("ix_forum_replies_thread_id_id", "forum_replies", ["thread_id", "id"])
    op.create_table(
        "forum_votes",
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_id", BigId, nullable=False),
        *_user("user_id", "forum_votes"),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        _created(),
        sa.CheckConstraint("target_kind IN ('thread','reply')", name=op.f("ck_forum_votes_target_kind")),
        sa.CheckConstraint("value IN (-1, 1)", name=op.f("ck_forum_votes_value")),
        sa.PrimaryKeyConstraint("target_kind", "target_id", "user_id", name=op.f("pk_forum_votes")),
    )
    op.create_table(
        "forum_edits",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_id", BigId, nullable=False),
        *_user("editor_id", "forum_edits", nullable=True, ondelete="SET NULL"),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        _created(),
        sa.CheckConstraint("target_kind IN ('thread','reply')", name=op.f("ck_forum_edits_target_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_edits")),
    )
    op.create_index("ix_forum_edits_target_kind_target_id_id", "forum_edits", ["target_kind", "target_id", "id"])
    for name in ("forum_watchers", "forum_views"):
        op.create_table(
            name,
            sa.Column("thread_id", BigId, nullable=False),
            *_user("user_id", name),
            _created() if name == "forum_watchers" else sa.Column("viewed_at", sa.DateTime(timezone=True),
                                                                  nullable=False),
            sa.ForeignKeyConstraint(["thread_id"], ["forum_threads.id"],
                                    name=op.f(f"fk_{name}_thread_id_forum_threads"), ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("thread_id", "user_id", name=op.f(f"pk_{name}")),
        )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    op.bulk_insert(categories, [{
        "name": "General", "slug": "general", "description": "Anything about the Vonix Network community",
        "position": 0, "view": "everyone", "post": "members", "created_at": now}])


def downgrade() -> None:
    op.drop_table("forum_views")
    op.drop_table("forum_watchers")
    op.drop_index("ix_forum_edits_target_kind_target_id_id", table_name="forum_edits")
    op.drop_table("forum_edits")
    op.drop_table("forum_votes")
    op.drop_index("ix_forum_replies_thread_id_id", table_name="forum_replies")
    op.drop_table("forum_replies")
    op.drop_index("ix_forum_threads_new", table_name="forum_threads")
    op.drop_index("ix_forum_threads_top", table_name="forum_threads")
    op.drop_index("ix_forum_threads_latest", table_name="forum_threads")
    op.drop_table("forum_threads")
    op.drop_table("forum_categories")
