"""The community's forum: categories, threads, replies, votes, watchers, edits (docs/community.md).

Who may see a category decides everything under it: a thread (its replies, votes, edits, live
streams) of a category a member may not view is "not found", exactly like one that does not exist,
so ids cannot be probed. Category rules are "everyone", "members" (signed-in people, not bots) or a
site role ("moderator", "admin": that role or above). Site moderators (`community.moderate`) pin,
lock and delete any thread they can see.

Writes start with a write (an insert or a guarded update) so SQLite takes its write lock at once
(a transaction that read first and then writes fails when another writer got in between), and
update the counters on the same transaction. Live events go out after the commit on
`live:forum:<category_id>` and `live:thread:<id>` in their public shape (no per-member fields: a
client merges them into what it shows). XP is awarded per source id (server/services/xp.py), so a
vote toggled ten times awards once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from realtime.connection import ConnUser
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import users
from server.db.tables_forum import (
    forum_categories,
    forum_edits,
    forum_replies,
    forum_threads,
    forum_views,
    forum_votes,
    forum_watchers,
)
from server.db.types import BigId, utcnow
from server.errors import Conflict, Forbidden, NotFound
from server.observability.logging import get_logger
from server.services import cursors, markdown
from server.services.cursors import MAX_ID
from server.services.viewer import Page, Viewer

log = get_logger("vonix.forum")

RULE_LEVELS = {"everyone": 0, "members": 1, "moderator": 2, "admin": 3}
VIEW_WINDOW = timedelta(hours=1)  # a member's views of a thread count once per hour
NOTIFY_BODY = 200
Sort = Literal["latest", "top", "new"]
Kind = Literal["thread", "reply"]
SORT_KEYS: dict[str, sa.Column[Any]] = {"latest": forum_threads.c.last_activity_at, "top": forum_threads.c.score,
                                        "new": forum_threads.c.created_at}
CATEGORY_RULES = (forum_categories.c.view.label("category_view"), forum_categories.c.post.label("category_post"))


def allows(rule: str, viewer: Viewer) -> bool:
    """May `viewer` do what a category rule ("everyone", "members", a role) guards?"""
    return viewer.level >= RULE_LEVELS.get(rule, 99)


# --- cursors (server/services/cursors.py) ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class ThreadCursor:
    sort: str
    pinned: bool
    key: Any
    id: int

    def encode(self) -> str:
        key = self.key.isoformat() if isinstance(self.key, datetime) else self.key
        return cursors.encode([self.sort, int(self.pinned), key, self.id])

    @classmethod
    def decode(cls, cursor: str | None, sort: str) -> ThreadCursor | None:
        value = cursors.decode(cursor, 4)
        if value is None:
            return None
        if value[0] != sort or value[1] not in (0, 1):
            raise cursors.bad_cursor()
        key = value[2]
        try:
            key = int(key) if sort == "top" and not isinstance(key, bool) else datetime.fromisoformat(key)
        except (TypeError, ValueError):
            raise cursors.bad_cursor() from None
        if isinstance(key, datetime) and key.tzinfo is None:
            raise cursors.bad_cursor()
        return cls(sort, bool(value[1]), key, cursors.valid_id(value[3]))

    @classmethod
    def after(cls, sort: str, row: Any) -> ThreadCursor:
        return cls(sort, bool(row["pinned"]), row[SORT_KEYS[sort].name], int(row["id"]))


def reply_cursor(cursor: str | None) -> int | None:
    value = cursors.decode(cursor, 2)
    if value is None:
        return None
    if value[0] != "r":
        raise cursors.bad_cursor()
    return cursors.valid_id(value[1])


# --- list queries (module level, so tests/integration/test_community_query_plans.py EXPLAINs them) ---

def threads_query(category_id: int, pinned: bool, sort: str, after: ThreadCursor | None,
                  limit: int) -> sa.Select[Any]:
    """One part (pinned or not) of a category's thread list by `sort`, after the keyset position
    `after`: a range of ix_forum_threads_<sort> (category_id, pinned, key, id), read backwards."""
    key = SORT_KEYS[sort]
    query = sa.select(forum_threads).where(forum_threads.c.category_id == category_id,
                                           forum_threads.c.pinned.is_(pinned),
                                           forum_threads.c.deleted.is_(False))
    if after is not None:
        query = query.where(sa.tuple_(key, forum_threads.c.id) < sa.tuple_(
            sa.bindparam(None, after.key, type_=key.type), sa.bindparam(None, after.id, type_=BigId)))
    return query.order_by(key.desc(), forum_threads.c.id.desc()).limit(limit)


def replies_query(thread_id: int, after: int | None, limit: int) -> sa.Select[Any]:
    """A page of a thread's replies, oldest first, one more than `limit` to tell whether another
    page follows (ix_forum_replies_thread_id_id)."""
    query = sa.select(forum_replies).where(forum_replies.c.thread_id == thread_id)
    if after is not None:
        query = query.where(forum_replies.c.id > after)
    return query.order_by(forum_replies.c.id).limit(limit + 1)


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64] or "category"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Forum:
    def __init__(self, resources: Any) -> None:
        self.resources = resources  # people, live, notifications: set by Resources.build before attach
        self.db: Database = resources.db

    # --- dialect helpers ---------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        """INSERT with ON CONFLICT support on either database."""
        return (pg_insert if self.db.dialect == "postgresql" else sqlite_insert)(table)

    async def _members(self, names: set[str]) -> dict[str, str]:
        """Which of these (lower-case) names are active members: lower name -> username."""
        rows = await self.db.fetch_all("forum.mentioned", sa.select(users.c.username).where(
            sa.func.lower(users.c.username).in_(sorted(names)), users.c.status == "active"))
        return {row["username"].lower(): row["username"] for row in rows}

    async def render(self, source: str) -> markdown.Rendered:
        return await markdown.render(source, self._members)

    # --- categories ----------------------------------------------------------------------------
    def category_shape(self, row: Any, viewer: Viewer) -> dict[str, Any]:
        return {"id": row["id"], "name": row["name"], "slug": row["slug"], "description": row["description"],
                "position": row["position"], "view": row["view"], "post": row["post"],
                "threads": row["threads"], "replies": row["replies"],
                "last_activity_at": _iso(row["last_activity_at"]),
                "can_post": allows(row["view"], viewer) and allows(row["post"], viewer)}

    async def categories(self, viewer: Viewer) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all("forum.categories", sa.select(forum_categories).order_by(
            forum_categories.c.position, forum_categories.c.id))
        return [self.category_shape(row, viewer) for row in rows if allows(row["view"], viewer)]

    async def _category_row(self, category_id: int) -> Any:
        return await self.db.fetch_one("forum.category", sa.select(forum_categories).where(
            forum_categories.c.id == category_id))

    async def category_for(self, viewer: Viewer, category_id: int) -> Any:
        row = await self._category_row(category_id)
        if row is None or not allows(row["view"], viewer):
            raise NotFound("No such category.", code="category_not_found")
        return row

    async def create_category(self, viewer: Viewer, fields: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(fields)
        if values.get("position") is None:
            top = await self.db.fetch_val("forum.last_position", sa.select(
                sa.func.max(forum_categories.c.position)))
            values["position"] = 0 if top is None else int(top) + 1
        values = {k: v for k, v in values.items() if v is not None}
        try:
            category_id = await self.db.fetch_val("forum.create_category", forum_categories.insert().values(
                **values, slug=slugify(values["name"]), created_at=utcnow()).returning(forum_categories.c.id))
        except UniqueViolation:
            raise Conflict("A category with that name exists.", code="category_exists") from None
        return self.category_shape(await self._category_row(category_id), viewer)

    async def update_category(self, viewer: Viewer, category_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(changes)
        if "name" in values:
            values["slug"] = slugify(values["name"])
        if values:
            try:
                done = await self.db.fetch_val("forum.update_category", forum_categories.update().where(
                    forum_categories.c.id == category_id).values(**values).returning(forum_categories.c.id))
            except UniqueViolation:
                raise Conflict("A category with that name exists.", code="category_exists") from None
            if done is None:
                raise NotFound("No such category.", code="category_not_found")
        row = await self._category_row(category_id)
        if row is None:
            raise NotFound("No such category.", code="category_not_found")
        return self.category_shape(row, viewer)

    async def delete_category(self, category_id: int) -> None:
        """Only an empty one (no live threads); tombstones go with it."""
        if await self._category_row(category_id) is None:
            raise NotFound("No such category.", code="category_not_found")
        gone = await self.db.fetch_val("forum.delete_category", forum_categories.delete().where(
            forum_categories.c.id == category_id, forum_categories.c.threads == 0).returning(forum_categories.c.id))
        if gone is None:
            raise Conflict("The category still has threads.", code="category_not_empty")

    # --- reading threads -------------------------------------------------------------------------
    async def _thread_row(self, thread_id: int) -> Any:
        return await self.db.fetch_one("forum.thread", sa.select(forum_threads, *CATEGORY_RULES).select_from(
            forum_threads.join(forum_categories, forum_categories.c.id == forum_threads.c.category_id)).where(
            forum_threads.c.id == thread_id))

    async def readable_thread(self, viewer: Viewer, thread_id: int) -> Any:
        """The thread (with its category's rules) if the viewer may see its category, else 404."""
        row = await self._thread_row(thread_id)
        if row is None or not allows(row["category_view"], viewer):
            raise NotFound("No such thread.", code="thread_not_found")
        return row

    async def readable_reply(self, viewer: Viewer, reply_id: int) -> tuple[Any, Any]:
        reply = await self.db.fetch_one("forum.reply", sa.select(forum_replies).where(forum_replies.c.id == reply_id))
        if reply is None:
            raise NotFound("No such reply.", code="reply_not_found")
        thread = await self._thread_row(reply["thread_id"])
        if thread is None or not allows(thread["category_view"], viewer):
            raise NotFound("No such reply.", code="reply_not_found")
        return reply, thread

    async def _my_votes(self, viewer: Viewer | None, kind: Kind, ids: Sequence[int]) -> dict[int, int]:
        if viewer is None or not ids:
            return {}
        rows = await self.db.fetch_all("forum.my_votes", sa.select(forum_votes.c.target_id, forum_votes.c.value).where(
            forum_votes.c.target_kind == kind, forum_votes.c.target_id.in_(list(ids)),
            forum_votes.c.user_id == viewer.user_id))
        return {row["target_id"]: row["value"] for row in rows}

    async def _watching(self, viewer: Viewer, ids: Sequence[int]) -> set[int]:
        if not ids:
            return set()
        rows = await self.db.fetch_all("forum.watching", sa.select(forum_watchers.c.thread_id).where(
            forum_watchers.c.thread_id.in_(list(ids)), forum_watchers.c.user_id == viewer.user_id))
        return {row["thread_id"] for row in rows}

    async def shape_threads(self, rows: Sequence[Any], viewer: Viewer | None) -> list[dict[str, Any]]:
        """Threads as a member sees them; `viewer` None: the public shape live streams carry
        (no `body`, `my_vote` or `watching`, a tombstone as everyone but moderators sees it)."""
        ids = [row["id"] for row in rows]
        authors = await self.resources.people.authors(r["author_id"] for r in rows if r["author_id"] is not None)
        votes = await self._my_votes(viewer, "thread", ids)
        watching = await self._watching(viewer, ids) if viewer is not None else set()
        return [self._thread(row, authors, viewer, votes, watching) for row in rows]

    def _thread(self, row: Any, authors: Mapping[int, Any], viewer: Viewer | None, votes: Mapping[int, int],
                watching: set[int]) -> dict[str, Any]:
        hidden = row["deleted"] and (viewer is None or not viewer.moderator)
        shape = {
            "id": row["id"], "category_id": row["category_id"],
            "title": None if hidden else row["title"],
            "author": None if hidden else authors.get(row["author_id"]),
            "html": None if hidden else row["html"],
            "score": row["score"], "replies": row["replies"], "views": row["views"],
            "pinned": row["pinned"], "locked": row["locked"], "deleted": row["deleted"],
            "edited_at": _iso(row["edited_at"]), "created_at": _iso(row["created_at"]),
            "last_activity_at": _iso(row["last_activity_at"]),
        }
        if viewer is not None:
            mine = row["author_id"] == viewer.user_id and not row["deleted"]
            shape.update(body=row["body"] if mine else None, my_vote=votes.get(row["id"], 0),
                         watching=row["id"] in watching)
        return shape

    async def shape_replies(self, rows: Sequence[Any], viewer: Viewer | None) -> list[dict[str, Any]]:
        authors = await self.resources.people.authors(r["author_id"] for r in rows if r["author_id"] is not None)
        votes = await self._my_votes(viewer, "reply", [row["id"] for row in rows])
        return [self._reply(row, authors, viewer, votes) for row in rows]

    def _reply(self, row: Any, authors: Mapping[int, Any], viewer: Viewer | None,
               votes: Mapping[int, int]) -> dict[str, Any]:
        hidden = row["deleted"] and (viewer is None or not viewer.moderator)
        shape = {"id": row["id"], "thread_id": row["thread_id"],
                 "author": None if hidden else authors.get(row["author_id"]),
                 "html": None if hidden else row["html"], "score": row["score"], "deleted": row["deleted"],
                 "edited_at": _iso(row["edited_at"]), "created_at": _iso(row["created_at"])}
        if viewer is not None:
            mine = row["author_id"] == viewer.user_id and not row["deleted"]
            shape.update(body=row["body"] if mine else None, my_vote=votes.get(row["id"], 0))
        return shape

    async def list_threads(self, viewer: Viewer, category_id: int, sort: Sort, cursor: str | None,
                           limit: int) -> Page:
        """Pinned threads first (on the first pages), then the rest, each by `sort`, newest id on ties."""
        position = ThreadCursor.decode(cursor, sort)
        await self.category_for(viewer, category_id)
        rows: list[Any] = []
        if position is None or position.pinned:
            rows = await self._threads_part(category_id, True, sort, position, limit + 1)
        if len(rows) <= limit:
            after = position if position is not None and not position.pinned else None
            rows += await self._threads_part(category_id, False, sort, after, limit + 1 - len(rows))
        shown = rows[:limit]
        following = ThreadCursor.after(sort, shown[-1]).encode() if len(rows) > limit else None
        return Page(await self.shape_threads(shown, viewer), following)

    async def _threads_part(self, category_id: int, pinned: bool, sort: str, after: ThreadCursor | None,
                            limit: int) -> list[Any]:
        return await self.db.fetch_all(f"forum.threads_{sort}", threads_query(category_id, pinned, sort, after, limit))

    async def thread_page(self, viewer: Viewer, thread_id: int, cursor: str | None, limit: int) -> dict[str, Any]:
        """A thread and a page of its replies (oldest first); the first page counts a view."""
        after = reply_cursor(cursor)
        row = await self.readable_thread(viewer, thread_id)
        if after is None and await self._count_view(thread_id, viewer.user_id):
            row = await self.readable_thread(viewer, thread_id)
        rows = await self.db.fetch_all("forum.replies", replies_query(thread_id, after, limit))
        shown = rows[:limit]
        following = cursors.encode(["r", shown[-1]["id"]]) if len(rows) > limit else None
        return {"thread": (await self.shape_threads([row], viewer))[0],
                "replies": Page(await self.shape_replies(shown, viewer), following).body()}

    async def _count_view(self, thread_id: int, user_id: int) -> bool:
        """+1 view unless this member viewed the thread within the hour (one row per member)."""
        now = utcnow()
        upsert = self._insert(forum_views).values(thread_id=thread_id, user_id=user_id, viewed_at=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[forum_views.c.thread_id, forum_views.c.user_id],
            set_={"viewed_at": now}, where=forum_views.c.viewed_at <= now - VIEW_WINDOW,
        ).returning(forum_views.c.thread_id)
        async with self.db.transaction():
            counted = await self.db.fetch_val("forum.view", upsert)
            if counted is not None:
                await self.db.execute("forum.count_view", forum_threads.update().where(
                    forum_threads.c.id == thread_id).values(views=forum_threads.c.views + 1))
        return counted is not None

    # --- writing threads -------------------------------------------------------------------------
    async def create_thread(self, viewer: Viewer, category_id: int, title: str, body: str) -> dict[str, Any]:
        category = await self.category_for(viewer, category_id)
        if not allows(category["post"], viewer):
            raise Forbidden("You may not start threads in this category.", code="forbidden")
        rendered = await self.render(body)
        now = utcnow()
        async with self.db.transaction():
            thread_id = await self.db.fetch_val("forum.insert_thread", forum_threads.insert().values(
                category_id=category_id, author_id=viewer.user_id, title=title, body=body, html=rendered.html,
                created_at=now, last_activity_at=now).returning(forum_threads.c.id))
            await self._category_counts(category_id, threads=1, at=now)
            await self.db.execute("forum.watch", self._insert(forum_watchers).values(
                thread_id=thread_id, user_id=viewer.user_id, created_at=now).on_conflict_do_nothing())
        row = await self.readable_thread(viewer, thread_id)
        public = (await self.shape_threads([row], None))[0]
        await self.resources.live.publish(f"live:forum:{category_id}", {"type": "thread_created", "thread": public})
        self.resources.people.xp_event(viewer.user_id, "forum_thread", f"thread:{thread_id}")
        self._notify_mentions(row, viewer, rendered.mentions, f"/forum/t/{thread_id}", "a thread")
        return (await self.shape_threads([row], viewer))[0]

    async def _category_counts(self, category_id: int, *, threads: int = 0, replies: int = 0,
                               at: datetime | None = None) -> None:
        values: dict[str, Any] = {"threads": forum_categories.c.threads + threads,
                                  "replies": forum_categories.c.replies + replies}
        if at is not None:
            values["last_activity_at"] = at
        await self.db.execute("forum.category_counts", forum_categories.update().where(
            forum_categories.c.id == category_id).values(**values))

    def _may_change(self, row: Any, viewer: Viewer, what: str) -> None:
        """Authors change their own posts, site moderators anyone's; a tombstone nobody's."""
        if row["author_id"] != viewer.user_id and not viewer.moderator:
            raise Forbidden(f"Only its author or a moderator may change this {what}.", code="forbidden")
        if row["deleted"]:
            raise Forbidden(f"This {what} was deleted.", code=f"{what}_deleted")

    async def edit_thread(self, viewer: Viewer, thread_id: int, title: str | None, body: str | None) -> dict[str, Any]:
        row = await self.readable_thread(viewer, thread_id)
        self._may_change(row, viewer, "thread")
        values: dict[str, Any] = {}
        if title is not None and title != row["title"]:
            values["title"] = title
        rendered = None
        if body is not None and body != row["body"]:
            rendered = await self.render(body)
            values.update(body=body, html=rendered.html)
        if values:
            now = utcnow()
            async with self.db.transaction():
                # guarded by the version read: a concurrent edit makes this one a conflict
                done = await self.db.fetch_val("forum.edit_thread", forum_threads.update().where(
                    forum_threads.c.id == thread_id, forum_threads.c.title == row["title"],
                    forum_threads.c.body == row["body"], forum_threads.c.deleted.is_(False))
                    .values(**values, edited_at=now).returning(forum_threads.c.id))
                if done is None:
                    raise Conflict("The thread changed meanwhile; reload it.", code="edit_conflict")
                await self.db.execute("forum.insert_edit", forum_edits.insert().values(
                    target_kind="thread", target_id=thread_id, editor_id=viewer.user_id, title=row["title"],
                    body=row["body"], created_at=now))
            old = await self._members(markdown.mention_candidates(row["body"]))
            fresh = (rendered.mentions if rendered else frozenset()) - set(old.values())
            row = await self.readable_thread(viewer, thread_id)
            await self._thread_changed(row)
            self._notify_mentions(row, viewer, fresh, f"/forum/t/{thread_id}", "a thread")
        return (await self.shape_threads([row], viewer))[0]

    async def _thread_changed(self, row: Any, *, category: bool = True) -> None:
        """`thread_updated` on the thread's stream and (for what lists show) its category's."""
        public = {"type": "thread_updated", "thread": (await self.shape_threads([row], None))[0]}
        await self.resources.live.publish(f"live:thread:{row['id']}", public)
        if category:
            await self.resources.live.publish(f"live:forum:{row['category_id']}", public)

    async def delete_thread(self, viewer: Viewer, thread_id: int) -> None:
        row = await self.readable_thread(viewer, thread_id)
        self._may_change(row, viewer, "thread")
        async with self.db.transaction():
            replies = await self.db.fetch_val("forum.delete_thread", forum_threads.update().where(
                forum_threads.c.id == thread_id, forum_threads.c.deleted.is_(False)).values(deleted=True)
                .returning(forum_threads.c.replies))
            if replies is not None:
                await self._category_counts(row["category_id"], threads=-1, replies=-int(replies))
        if replies is None:
            return  # deleted meanwhile: done once
        await self.resources.live.publish(f"live:forum:{row['category_id']}", {"type": "thread_deleted",
                                                                               "id": thread_id})
        await self._thread_changed(await self.readable_thread(viewer, thread_id), category=False)
        self._removed(row, viewer, f"thread:{thread_id}")

    def _removed(self, row: Any, viewer: Viewer, source: str) -> None:
        if row["author_id"] is not None and row["author_id"] != viewer.user_id:
            self.resources.people.xp_event(row["author_id"], "moderator_removal", source)

    async def set_flag(self, viewer: Viewer, thread_id: int, flag: Literal["pinned", "locked"],
                       on: bool) -> dict[str, Any]:
        """Pin/unpin, lock/unlock (the route checks `community.moderate`)."""
        row = await self.readable_thread(viewer, thread_id)
        if row[flag] != on:
            changed = await self.db.fetch_val(f"forum.{flag}", forum_threads.update().where(
                forum_threads.c.id == thread_id, forum_threads.c[flag].is_(not on)).values({flag: on})
                .returning(forum_threads.c.id))
            row = await self.readable_thread(viewer, thread_id)
            if changed is not None:
                await self._thread_changed(row)
        return (await self.shape_threads([row], viewer))[0]

    async def watch(self, viewer: Viewer, thread_id: int, on: bool) -> dict[str, Any]:
        await self.readable_thread(viewer, thread_id)
        if on:
            await self.db.execute("forum.watch", self._insert(forum_watchers).values(
                thread_id=thread_id, user_id=viewer.user_id, created_at=utcnow()).on_conflict_do_nothing())
        else:
            await self.db.execute("forum.unwatch", forum_watchers.delete().where(
                forum_watchers.c.thread_id == thread_id, forum_watchers.c.user_id == viewer.user_id))
        return {"watching": on}

    # --- replies ---------------------------------------------------------------------------------
    async def add_reply(self, viewer: Viewer, thread_id: int, body: str) -> dict[str, Any]:
        thread = await self.readable_thread(viewer, thread_id)
        if not allows(thread["category_post"], viewer):
            raise Forbidden("You may not post in this category.", code="forbidden")
        if thread["deleted"]:
            raise Forbidden("This thread was deleted.", code="thread_deleted")
        if thread["locked"] and not viewer.moderator:
            raise Forbidden("This thread is locked.", code="thread_locked")
        rendered = await self.render(body)
        now = utcnow()
        async with self.db.transaction():
            reply_id = await self.db.fetch_val("forum.insert_reply", forum_replies.insert().values(
                thread_id=thread_id, author_id=viewer.user_id, body=body, html=rendered.html, created_at=now)
                .returning(forum_replies.c.id))
            counted = await self.db.fetch_val("forum.count_reply", forum_threads.update().where(
                forum_threads.c.id == thread_id, forum_threads.c.deleted.is_(False))
                .values(replies=forum_threads.c.replies + 1, last_activity_at=now).returning(forum_threads.c.id))
            if counted is None:  # deleted since it was read: the reply is rolled back
                raise Forbidden("This thread was deleted.", code="thread_deleted")
            await self._category_counts(thread["category_id"], replies=1, at=now)
            await self.db.execute("forum.watch", self._insert(forum_watchers).values(
                thread_id=thread_id, user_id=viewer.user_id, created_at=now).on_conflict_do_nothing())
        reply = await self.db.fetch_one("forum.reply", sa.select(forum_replies).where(forum_replies.c.id == reply_id))
        await self.resources.live.publish(f"live:thread:{thread_id}", {
            "type": "reply_created", "reply": (await self.shape_replies([reply], None))[0]})
        await self._thread_changed(await self.readable_thread(viewer, thread_id))
        self.resources.people.xp_event(viewer.user_id, "forum_reply", f"reply:{reply_id}")
        self.resources.spawn(self._notify_reply(thread, reply_id, viewer, body, rendered.mentions), "forum-notify")
        return (await self.shape_replies([reply], viewer))[0]

    async def edit_reply(self, viewer: Viewer, reply_id: int, body: str) -> dict[str, Any]:
        reply, thread = await self.readable_reply(viewer, reply_id)
        self._may_change(reply, viewer, "reply")
        if body != reply["body"]:
            rendered = await self.render(body)
            now = utcnow()
            async with self.db.transaction():
                done = await self.db.fetch_val("forum.edit_reply", forum_replies.update().where(
                    forum_replies.c.id == reply_id, forum_replies.c.body == reply["body"],
                    forum_replies.c.deleted.is_(False)).values(body=body, html=rendered.html, edited_at=now)
                    .returning(forum_replies.c.id))
                if done is None:
                    raise Conflict("The reply changed meanwhile; reload it.", code="edit_conflict")
                await self.db.execute("forum.insert_edit", forum_edits.insert().values(
                    target_kind="reply", target_id=reply_id, editor_id=viewer.user_id, body=reply["body"],
                    created_at=now))
            old = await self._members(markdown.mention_candidates(reply["body"]))
            reply = await self._reply_changed(reply_id)
            self._notify_mentions(thread, viewer, rendered.mentions - set(old.values()),
                                  f"/forum/t/{thread['id']}#r{reply_id}", "a reply")
        return (await self.shape_replies([reply], viewer))[0]

    async def _reply_changed(self, reply_id: int) -> Any:
        reply = await self.db.fetch_one("forum.reply", sa.select(forum_replies).where(forum_replies.c.id == reply_id))
        await self.resources.live.publish(f"live:thread:{reply['thread_id']}", {
            "type": "reply_updated", "reply": (await self.shape_replies([reply], None))[0]})
        return reply

    async def delete_reply(self, viewer: Viewer, reply_id: int) -> None:
        reply, thread = await self.readable_reply(viewer, reply_id)
        self._may_change(reply, viewer, "reply")
        async with self.db.transaction():
            gone = await self.db.fetch_val("forum.delete_reply", forum_replies.update().where(
                forum_replies.c.id == reply_id, forum_replies.c.deleted.is_(False)).values(deleted=True)
                .returning(forum_replies.c.id))
            if gone is not None:
                live = await self.db.fetch_val("forum.uncount_reply", forum_threads.update().where(
                    forum_threads.c.id == thread["id"]).values(replies=forum_threads.c.replies - 1)
                    .returning(forum_threads.c.deleted))
                if not live:  # a deleted thread's replies were taken off the category already
                    await self._category_counts(thread["category_id"], replies=-1)
        if gone is None:
            return
        await self._reply_changed(reply_id)
        await self._thread_changed(await self.readable_thread(viewer, thread["id"]))
        self._removed(reply, viewer, f"reply:{reply_id}")

    # --- votes and edits ---------------------------------------------------------------------------
    async def vote(self, viewer: Viewer, kind: Kind, target_id: int, value: int) -> dict[str, Any]:
        """One vote per member per thread or reply; 0 takes it back. Authors earn XP once per voter
        and direction (`vote:<kind>:<id>:<voter>`), whatever the toggling."""
        if kind == "thread":
            target = thread = await self.readable_thread(viewer, target_id)
        else:
            target, thread = await self.readable_reply(viewer, target_id)
        if target["deleted"]:
            raise Forbidden(f"This {kind} was deleted.", code=f"{kind}_deleted")
        table = forum_threads if kind == "thread" else forum_replies
        mine = sa.and_(forum_votes.c.target_kind == kind, forum_votes.c.target_id == target_id,
                       forum_votes.c.user_id == viewer.user_id)
        try:
            async with self.db.transaction():
                old = await self.db.fetch_val("forum.unvote", forum_votes.delete().where(mine)
                                              .returning(forum_votes.c.value))
                if value:
                    await self.db.execute("forum.vote", forum_votes.insert().values(
                        target_kind=kind, target_id=target_id, user_id=viewer.user_id, value=value,
                        created_at=utcnow()))
                delta = value - int(old or 0)
                score = await self.db.fetch_val("forum.score", table.update().where(table.c.id == target_id)
                                                .values(score=table.c.score + delta).returning(table.c.score))
        except UniqueViolation:  # the same member's vote at the same moment: the other one won
            return await self._vote_state(kind, target_id, viewer)
        if delta:
            await self._vote_changed(kind, target_id, thread)
        author = target["author_id"]
        if value and value != old and author is not None and author != viewer.user_id:
            action = "upvote_received" if value > 0 else "downvote_received"
            self.resources.people.xp_event(author, action, f"vote:{kind}:{target_id}:{viewer.user_id}")
        return {"score": int(score), "my_vote": value}

    async def _vote_state(self, kind: Kind, target_id: int, viewer: Viewer) -> dict[str, Any]:
        table = forum_threads if kind == "thread" else forum_replies
        score = await self.db.fetch_val("forum.score_of", sa.select(table.c.score).where(table.c.id == target_id))
        mine = await self._my_votes(viewer, kind, [target_id])
        return {"score": int(score or 0), "my_vote": mine.get(target_id, 0)}

    async def _vote_changed(self, kind: Kind, target_id: int, thread: Any) -> None:
        if kind == "reply":
            await self._reply_changed(target_id)
        else:
            row = await self._thread_row(target_id)
            if row is not None:
                await self._thread_changed(row)

    async def edits(self, viewer: Viewer, kind: Kind, target_id: int) -> list[dict[str, Any]]:
        """Earlier versions, newest first: for the author and moderators (an edit may have taken
        out something its author did not mean to publish)."""
        if kind == "thread":
            target = await self.readable_thread(viewer, target_id)
        else:
            target, _ = await self.readable_reply(viewer, target_id)
        if target["author_id"] != viewer.user_id and not viewer.moderator:
            raise Forbidden("Only its author and moderators see the edit history.", code="forbidden")
        rows = await self.db.fetch_all("forum.edits", sa.select(forum_edits).where(
            forum_edits.c.target_kind == kind, forum_edits.c.target_id == target_id).order_by(forum_edits.c.id.desc()))
        editors = await self.resources.people.authors(r["editor_id"] for r in rows if r["editor_id"] is not None)
        return [{"id": r["id"], **({"title": r["title"]} if kind == "thread" else {}), "body": r["body"],
                 "html": markdown.render_with(r["body"], {}).html, "editor": editors.get(r["editor_id"]),
                 "replaced_at": _iso(r["created_at"])} for r in rows]

    # --- notifications -----------------------------------------------------------------------------
    async def _may_view(self, user_ids: Iterable[int], rule: str) -> set[int]:
        """Of these members, the active ones who may view a category with `rule`."""
        ids = list(set(user_ids))
        if not ids:
            return set()
        rows = await self.db.fetch_all("forum.roles", sa.select(users.c.id, users.c.username, users.c.role).where(
            users.c.id.in_(ids), users.c.status == "active"))
        return {r["id"] for r in rows if allows(rule, Viewer(r["id"], r["username"], r["role"], r["role"] == "bot"))}

    async def _mentioned_ids(self, names: Iterable[str]) -> set[int]:
        lowered = sorted({name.lower() for name in names})
        if not lowered:
            return set()
        rows = await self.db.fetch_all("forum.mentioned_ids", sa.select(users.c.id).where(
            sa.func.lower(users.c.username).in_(lowered)))
        return {row["id"] for row in rows}

    async def _notify_reply(self, thread: Any, reply_id: int, actor: Viewer, body: str,
                            mentions: frozenset[str]) -> None:
        """Watchers get `forum_reply`; mentioned members `forum_mention` instead (one each);
        nobody about their own reply, nobody who may no longer see the category."""
        try:
            rows = await self.db.fetch_all("forum.watchers", sa.select(forum_watchers.c.user_id).where(
                forum_watchers.c.thread_id == thread["id"]))
            mentioned = await self._may_view(await self._mentioned_ids(mentions), thread["category_view"])
            watchers = await self._may_view((r["user_id"] for r in rows), thread["category_view"])
            mentioned.discard(actor.user_id)
            watchers -= mentioned | {actor.user_id}
            url = f"/forum/t/{thread['id']}#r{reply_id}"
            who = {"id": actor.user_id, "username": actor.username}
            notifications = self.resources.notifications
            if watchers:
                await notifications.notify_about(sorted(watchers), "forum_reply",
                                                 title=f"{actor.username} replied to “{thread['title']}”",
                                                 body=body[:NOTIFY_BODY], url=url, actor=who)
            if mentioned:
                await notifications.notify_about(sorted(mentioned), "forum_mention",
                                                 title=f"{actor.username} mentioned you in “{thread['title']}”",
                                                 body=body[:NOTIFY_BODY], url=url, actor=who)
        except Exception:
            log.exception("forum_notify_failed", thread_id=thread["id"])

    def _notify_mentions(self, thread: Any, actor: Viewer, names: Iterable[str], url: str, where: str) -> None:
        names = frozenset(names)
        if names:
            self.resources.spawn(self._mention(thread, actor, names, url, where), "forum-notify")

    async def _mention(self, thread: Any, actor: Viewer, names: frozenset[str], url: str, where: str) -> None:
        try:
            targets = await self._may_view(await self._mentioned_ids(names), thread["category_view"])
            targets.discard(actor.user_id)
            if targets:
                await self.resources.notifications.notify_about(
                    sorted(targets), "forum_mention", title=f"{actor.username} mentioned you in {where}",
                    body=thread["title"], url=url, actor={"id": actor.user_id, "username": actor.username})
        except Exception:
            log.exception("forum_notify_failed", thread_id=thread["id"])

    # --- live streams ------------------------------------------------------------------------------
    async def may_read_category(self, user: ConnUser, key: str) -> bool:
        """`live:forum:<category_id>`: who may view the category."""
        if not key.isdigit() or not 0 < int(key) < MAX_ID:
            return False
        row = await self._category_row(int(key))
        return row is not None and allows(row["view"], Viewer.of(user))

    async def may_read_thread(self, user: ConnUser, key: str) -> bool:
        """`live:thread:<id>`: who may view its category."""
        if not key.isdigit() or not 0 < int(key) < MAX_ID:
            return False
        row = await self._thread_row(int(key))
        return row is not None and allows(row["category_view"], Viewer.of(user))


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build)."""
    resources.forum = Forum(resources)
    resources.live.register("forum", resources.forum.may_read_category)
    resources.live.register("thread", resources.forum.may_read_thread)
