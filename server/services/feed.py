"""The social feed: posts (public, friends-only or in a group), comments and likes.

Who sees a post decides everything else (reading, liking, commenting, reporting, the live stream
`live:post:<id>`): public posts are seen by every signed-in member except those who blocked the
author; friends-only posts by the author and their friends (and site moderators, who must be able
to judge a report); a group's posts by whom the group lets read (`resources.groups.can_read`,
owned by the groups area; without it a group post is seen by nobody). Anything a member may not see
is "not found", exactly like something that does not exist, so ids cannot be probed.

Counters (`likes`, `comments`) are columns updated in the same transaction as the like or comment
row that changes them; the like table's key (kind, target, member) makes liking idempotent. Live
events go out after the commit; XP is awarded per source id (server/services/xp.py), so a like
toggled ten times awards the author once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from realtime.connection import ConnUser
from server.auth import audit
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import friendships
from server.db.tables_feed import feed_likes, post_comments, posts
from server.db.types import utcnow
from server.errors import Conflict, Forbidden, NotFound
from server.media.post_images import ProcessedImage, image_urls
from server.observability.logging import get_logger
from server.services import cursors
from server.services.cursors import MAX_ID
from server.services.relations import BLOCKED, FRIENDS
from server.services.viewer import Page, Viewer

log = get_logger("vonix.feed")

EVERYONE = "live:feed:everyone"


def _page(rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
    """Rows were fetched with limit + 1: the extra one only says that a next page exists."""
    shown = list(rows[:limit])
    return shown, cursors.encode_id(shown[-1]["id"]) if len(rows) > limit else None


# --- the list queries (built here so tests/integration/test_feed.py EXPLAINs what runs) -----------

def _newest_first(query: sa.Select[Any], cursor: int | None, limit: int) -> sa.Select[Any]:
    """limit + 1 rows: the extra one only says that a next page exists."""
    if cursor is not None:
        query = query.where(posts.c.id < cursor)
    return query.order_by(posts.c.id.desc()).limit(limit + 1)


def friends_query(author_ids: Sequence[int], cursor: int | None, limit: int) -> sa.Select[Any]:
    """Posts of these authors (friends and self), any visibility, not in groups
    (ix_posts_author_id_id)."""
    return _newest_first(sa.select(posts).where(
        posts.c.author_id.in_(author_ids), posts.c.group_id.is_(None), posts.c.deleted.is_(False)), cursor, limit)


def everyone_query(viewer_id: int, cursor: int | None, limit: int) -> sa.Select[Any]:
    """Public posts not in groups, minus the authors the viewer blocked (the primary key backwards,
    or ix_posts_group_id_id when group posts dominate)."""
    blocked = sa.select(friendships.c.friend_id).where(
        friendships.c.user_id == viewer_id, friendships.c.status == "blocked")
    return _newest_first(sa.select(posts).where(
        posts.c.visibility == "public", posts.c.group_id.is_(None), posts.c.deleted.is_(False),
        posts.c.author_id.not_in(blocked)), cursor, limit)


def group_query(group_id: int, cursor: int | None, limit: int) -> sa.Select[Any]:
    """A group's posts (ix_posts_group_id_id)."""
    return _newest_first(sa.select(posts).where(posts.c.group_id == group_id, posts.c.deleted.is_(False)),
                         cursor, limit)


def comments_query(post_id: int, cursor: int | None, limit: int) -> sa.Select[Any]:
    """A post's comments, oldest first (ix_post_comments_post_id_id)."""
    query = sa.select(post_comments).where(post_comments.c.post_id == post_id, post_comments.c.deleted.is_(False))
    if cursor is not None:
        query = query.where(post_comments.c.id > cursor)
    return query.order_by(post_comments.c.id).limit(limit + 1)


def liked_query(kind: str, ids: Sequence[int], user_id: int) -> sa.Select[Any]:
    """Which of these the member liked (the primary key of feed_likes)."""
    return sa.select(feed_likes.c.target_id).where(
        feed_likes.c.target_kind == kind, feed_likes.c.target_id.in_(ids), feed_likes.c.user_id == user_id)


class Feed:
    def __init__(self, resources: Any) -> None:
        self.resources = resources  # groups are attached after the feed: looked up when needed
        self.db: Database = resources.db

    # --- who sees what ---------------------------------------------------------------------------
    async def _group_allows(self, check: str, group_id: int, user_id: int) -> bool:
        """Ask the groups area (`can_read` / `can_post`); no groups service: nobody may."""
        method = getattr(self.resources.groups, check, None) if self.resources.groups is not None else None
        if method is None:
            return False
        try:
            return bool(await method(group_id, user_id))
        except Exception as exc:  # a failing check must not reveal the post
            log.warning("group_check_failed", check=check, error=exc.__class__.__name__)
            return False

    async def may_read(self, row: Any, viewer: Viewer) -> bool:
        if row is None or row["deleted"]:
            return False
        if row["group_id"] is not None:
            return await self._group_allows("can_read", int(row["group_id"]), viewer.user_id)
        if row["author_id"] == viewer.user_id:
            return True
        state = await self.resources.relations.state(viewer.user_id, row["author_id"])
        if state == BLOCKED:  # whom you blocked stays out of sight
            return False
        return row["visibility"] == "public" or state == FRIENDS or viewer.moderator

    async def readable_post(self, post_id: int, viewer: Viewer) -> Any:
        row = None if not 0 < post_id < MAX_ID else await self.db.fetch_one(
            "feed.post", sa.select(posts).where(posts.c.id == post_id))
        if not await self.may_read(row, viewer):
            raise NotFound("No such post.", code="post_not_found")
        return row

    async def readable_comment(self, comment_id: int, viewer: Viewer) -> tuple[Any, Any]:
        """The comment and its post, when the viewer may see the post (else 404)."""
        comment = None if not 0 < comment_id < MAX_ID else await self.db.fetch_one(
            "feed.comment", sa.select(post_comments).where(post_comments.c.id == comment_id))
        if comment is None or comment["deleted"]:
            raise NotFound("No such comment.", code="comment_not_found")
        try:
            post = await self.readable_post(int(comment["post_id"]), viewer)
        except NotFound:
            raise NotFound("No such comment.", code="comment_not_found") from None
        return comment, post

    async def _check_may_write(self, post: Any, viewer: Viewer) -> None:
        """Commenting on a group's post takes the right to post in the group (visible: 403)."""
        if post["group_id"] is not None and not await self._group_allows(
                "can_post", int(post["group_id"]), viewer.user_id):
            raise Forbidden("Only the group's members can comment here.", code="group_post_forbidden")

    # --- shapes ----------------------------------------------------------------------------------
    async def _liked(self, kind: str, ids: Iterable[int], user_id: int) -> set[int]:
        ids = list(ids)
        if not ids:
            return set()
        rows = await self.db.fetch_all("feed.liked", liked_query(kind, ids, user_id))
        return {int(r["target_id"]) for r in rows}

    async def shape_posts(self, rows: Sequence[Any], viewer: Viewer | None) -> list[dict[str, Any]]:
        """Posts as the API shows them; `viewer` None: as a stranger (broadcasts: not liked, no delete)."""
        authors = await self.resources.people.authors(r["author_id"] for r in rows)
        liked = await self._liked("post", (r["id"] for r in rows), viewer.user_id) if viewer else set()
        return [{
            "id": r["id"], "author": authors.get(r["author_id"]), "content": r["content"],
            "image": {**image_urls(r["image_key"]), "width": r["image_width"], "height": r["image_height"]}
            if r["image_key"] else None,
            "visibility": r["visibility"], "group_id": r["group_id"], "likes": r["likes"],
            "liked": r["id"] in liked, "comments": r["comments"], "created_at": r["created_at"].isoformat(),
            "can_delete": viewer is not None and (viewer.user_id == r["author_id"] or viewer.moderator),
        } for r in rows]

    async def shape_comments(self, rows: Sequence[Any], post: Any, viewer: Viewer | None) -> list[dict[str, Any]]:
        authors = await self.resources.people.authors(r["author_id"] for r in rows)
        liked = await self._liked("comment", (r["id"] for r in rows), viewer.user_id) if viewer else set()
        return [{
            "id": r["id"], "post_id": r["post_id"], "author": authors.get(r["author_id"]), "content": r["content"],
            "likes": r["likes"], "liked": r["id"] in liked, "created_at": r["created_at"].isoformat(),
            "can_delete": viewer is not None and self._may_delete_comment(r, post, viewer),
        } for r in rows]

    @staticmethod
    def _may_delete_comment(comment: Any, post: Any, viewer: Viewer) -> bool:
        """Its author, the post's author (their own thread) and site moderators."""
        return viewer.user_id in (comment["author_id"], post["author_id"]) or viewer.moderator

    # --- lists -----------------------------------------------------------------------------------
    async def feed(self, viewer: Viewer, which: str, cursor: int | None, limit: int) -> Page:
        """`friends`: friends' posts and your own, any visibility; `everyone`: public posts minus
        the authors you blocked. Group posts are in neither (they are the group's)."""
        if which == "friends":
            authors = [*await self.resources.relations.friend_ids(viewer.user_id), viewer.user_id]
            return await self._posts_page("feed.friends", friends_query(authors, cursor, limit), viewer, limit)
        return await self._posts_page("feed.everyone", everyone_query(viewer.user_id, cursor, limit), viewer, limit)

    async def group_feed(self, viewer: Viewer, group_id: int, cursor: int | None, limit: int) -> Page:
        if not 0 < group_id < MAX_ID or not await self._group_allows("can_read", group_id, viewer.user_id):
            raise NotFound("No such group.", code="group_not_found")
        return await self._posts_page("feed.group", group_query(group_id, cursor, limit), viewer, limit)

    async def _posts_page(self, name: str, query: sa.Select[Any], viewer: Viewer, limit: int) -> Page:
        rows, after = _page(await self.db.fetch_all(name, query), limit)
        return Page(await self.shape_posts(rows, viewer), after)

    async def comments(self, post_id: int, viewer: Viewer, cursor: int | None, limit: int) -> Page:
        """Oldest first (a conversation reads top to bottom)."""
        post = await self.readable_post(post_id, viewer)
        rows, after = _page(await self.db.fetch_all("feed.comments", comments_query(post_id, cursor, limit)), limit)
        return Page(await self.shape_comments(rows, post, viewer), after)

    # --- posts -----------------------------------------------------------------------------------
    async def create(self, viewer: Viewer, content: str, visibility: str, group_id: int | None) -> dict[str, Any]:
        if group_id is not None:
            if not await self._group_allows("can_read", group_id, viewer.user_id):
                raise NotFound("No such group.", code="group_not_found")
            if not await self._group_allows("can_post", group_id, viewer.user_id):
                raise Forbidden("Only the group's members can post here.", code="group_post_forbidden")
        post_id = await self.db.fetch_val("feed.insert_post", posts.insert().values(
            author_id=viewer.user_id, group_id=group_id, content=content, visibility=visibility,
            created_at=utcnow()).returning(posts.c.id))
        row = await self.db.fetch_one("feed.post", sa.select(posts).where(posts.c.id == post_id))
        post = (await self.shape_posts([row], viewer))[0]
        await self._announce(row)
        people = self.resources.people
        people.xp_event(viewer.user_id, "social_post", f"post:{post_id}")
        people.xp_event(viewer.user_id, "first_post", "first")
        return post

    async def _announce(self, row: Any) -> None:
        """A new post on its stream; friends of the author hear of feed posts on their own channel
        (in the background: one publish per friend must not hold the response)."""
        public = (await self.shape_posts([row], None))[0]
        if row["group_id"] is not None:
            await self.resources.live.publish(f"live:group:{row['group_id']}", {"type": "post_created", "post": public})
            return
        if row["visibility"] == "public":
            await self.resources.live.publish(EVERYONE, {"type": "post_created", "post": public})
        self.resources.spawn(self._tell_friends(int(row["author_id"]), public), "feed-friends")

    async def _tell_friends(self, author_id: int, post: dict[str, Any]) -> None:
        for friend_id in await self.resources.relations.friend_ids(author_id):
            await self.resources.people.publish(friend_id, {"type": "feed_post", "post": post})

    async def post_for_image(self, post_id: int, viewer: Viewer) -> Any:
        """Checked before an upload is decoded: the author's own post, still without a picture."""
        row = await self.readable_post(post_id, viewer)
        if row["author_id"] != viewer.user_id:
            raise Forbidden("Only the author adds a picture to a post.", code="not_author")
        if row["image_key"] is not None:
            raise Conflict("This post already has a picture.", code="image_already_set")
        return row

    async def set_image(self, row: Any, viewer: Viewer, image: ProcessedImage) -> dict[str, Any]:
        updated = await self.db.fetch_one("feed.set_image", posts.update().where(
            posts.c.id == row["id"], posts.c.image_key.is_(None)).values(
            image_key=image.key, image_width=image.width, image_height=image.height).returning(*posts.c))
        if updated is None:  # another upload won the race
            raise Conflict("This post already has a picture.", code="image_already_set")
        post = (await self.shape_posts([updated], viewer))[0]
        await self._counters(updated["id"], updated["likes"], updated["comments"], image=post["image"])
        return post

    async def delete_post(self, post_id: int, viewer: Viewer) -> None:
        row = await self.readable_post(post_id, viewer)
        if row["author_id"] != viewer.user_id and not viewer.moderator:
            raise Forbidden("Only the author or a moderator deletes a post.", code="not_author")
        await self.remove_post(row, viewer)

    async def remove_post(self, row: Any, viewer: Viewer) -> None:
        """Tombstone the post (a moderator's removal costs the author 50 XP and is audited)."""
        gone = await self.db.fetch_val("feed.delete_post", posts.update().where(
            posts.c.id == row["id"], posts.c.deleted.is_(False)).values(deleted=True).returning(posts.c.id))
        if gone is None:
            return
        await self.resources.live.publish(f"live:post:{row['id']}", {"type": "post_deleted", "id": row["id"]})
        if row["author_id"] != viewer.user_id:
            await self._moderated(viewer, int(row["author_id"]), "post", int(row["id"]))

    async def _moderated(self, viewer: Viewer, author_id: int, kind: str, target_id: int) -> None:
        await audit.record(self.db, f"feed.{kind}_removed", actor_id=viewer.user_id, target_type=kind,
                           target_id=target_id, author_id=author_id)
        if viewer.moderator:
            self.resources.people.xp_event(author_id, "moderator_removal", f"{kind}:{target_id}")

    async def _counters(self, post_id: int, likes: int, comments: int, **extra: Any) -> None:
        """`post_updated` on the post's stream: its counters now (and what else changed)."""
        await self.resources.live.publish(f"live:post:{post_id}", {
            "type": "post_updated", "id": post_id, "likes": likes, "comments": comments, **extra})

    # --- likes -----------------------------------------------------------------------------------
    async def like_post(self, post_id: int, viewer: Viewer, on: bool) -> dict[str, Any]:
        post = await self.readable_post(post_id, viewer)
        changed, likes = await self._toggle("post", post_id, viewer.user_id, on)
        if changed:
            await self._counters(post_id, likes, post["comments"])
            if on and post["author_id"] != viewer.user_id:
                self.resources.people.xp_event(post["author_id"], "post_liked", f"like:post:{post_id}:{viewer.user_id}")
        return {"likes": likes, "liked": on}

    async def like_comment(self, comment_id: int, viewer: Viewer, on: bool) -> dict[str, Any]:
        comment, post = await self.readable_comment(comment_id, viewer)
        changed, likes = await self._toggle("comment", comment_id, viewer.user_id, on)
        if changed:
            await self.resources.live.publish(f"live:post:{post['id']}", {
                "type": "comment_updated", "id": comment_id, "likes": likes})
            if on and comment["author_id"] != viewer.user_id:
                self.resources.people.xp_event(comment["author_id"], "comment_liked",
                                               f"like:comment:{comment_id}:{viewer.user_id}")
        return {"likes": likes, "liked": on}

    async def _toggle(self, kind: str, target_id: int, user_id: int, on: bool) -> tuple[bool, int]:
        """(changed?, the like count now). The like row is written first (it takes SQLite's write
        lock and is the idempotency check), then the counter, in one transaction."""
        table = posts if kind == "post" else post_comments
        mine = sa.and_(feed_likes.c.target_kind == kind, feed_likes.c.target_id == target_id,
                       feed_likes.c.user_id == user_id)
        try:
            async with self.db.transaction():
                if on:
                    await self.db.execute("feed.like", feed_likes.insert().values(
                        target_kind=kind, target_id=target_id, user_id=user_id, created_at=utcnow()))
                elif await self.db.fetch_val("feed.unlike", feed_likes.delete().where(mine)
                                             .returning(feed_likes.c.user_id)) is None:
                    return False, await self._count(table, target_id)
                likes = await self.db.fetch_val("feed.count_like", table.update().where(table.c.id == target_id).values(
                    likes=table.c.likes + (1 if on else -1)).returning(table.c.likes))
        except UniqueViolation:  # liked already (a repeat, or the same like on another replica)
            return False, await self._count(table, target_id)
        return True, int(likes)

    async def _count(self, table: sa.Table, target_id: int) -> int:
        return int(await self.db.fetch_val("feed.likes", sa.select(table.c.likes).where(table.c.id == target_id)) or 0)

    # --- comments --------------------------------------------------------------------------------
    async def add_comment(self, post_id: int, viewer: Viewer, content: str) -> dict[str, Any]:
        post = await self.readable_post(post_id, viewer)
        await self._check_may_write(post, viewer)
        async with self.db.transaction():
            comment_id = await self.db.fetch_val("feed.insert_comment", post_comments.insert().values(
                post_id=post_id, author_id=viewer.user_id, content=content, created_at=utcnow())
                .returning(post_comments.c.id))
            counts = await self.db.fetch_one("feed.count_comment", posts.update().where(posts.c.id == post_id).values(
                comments=posts.c.comments + 1).returning(posts.c.id, posts.c.likes, posts.c.comments))
        row = await self.db.fetch_one("feed.comment", sa.select(post_comments).where(post_comments.c.id == comment_id))
        comment = (await self.shape_comments([row], post, viewer))[0]
        public = (await self.shape_comments([row], post, None))[0]
        await self.resources.live.publish(f"live:post:{post_id}", {"type": "comment_created", "comment": public})
        await self._counters(counts["id"], counts["likes"], counts["comments"])
        people = self.resources.people
        people.xp_event(viewer.user_id, "comment", f"comment:{comment_id}")
        people.xp_event(viewer.user_id, "first_comment", "first")
        return comment

    async def delete_comment(self, comment_id: int, viewer: Viewer) -> None:
        comment, post = await self.readable_comment(comment_id, viewer)
        if not self._may_delete_comment(comment, post, viewer):
            raise Forbidden("Only the comment's author, the post's author or a moderator deletes it.",
                            code="not_author")
        await self.remove_comment(comment, viewer)

    async def remove_comment(self, comment: Any, viewer: Viewer) -> None:
        async with self.db.transaction():
            gone = await self.db.fetch_val("feed.delete_comment", post_comments.update().where(
                post_comments.c.id == comment["id"], post_comments.c.deleted.is_(False)).values(deleted=True)
                .returning(post_comments.c.id))
            counts = None if gone is None else await self.db.fetch_one(
                "feed.count_comment", posts.update().where(posts.c.id == comment["post_id"]).values(
                    comments=posts.c.comments - 1).returning(posts.c.id, posts.c.likes, posts.c.comments))
        if counts is None:
            return
        await self.resources.live.publish(f"live:post:{comment['post_id']}", {
            "type": "comment_deleted", "id": comment["id"], "post_id": comment["post_id"]})
        await self._counters(counts["id"], counts["likes"], counts["comments"])
        if comment["author_id"] != viewer.user_id:
            await self._moderated(viewer, int(comment["author_id"]), "comment", int(comment["id"]))

    # --- reports ---------------------------------------------------------------------------------
    async def report_target(self, kind: str, target_id: int, viewer: Viewer) -> int:
        """The author of a post or comment the reporter can see (404 otherwise)."""
        if kind == "post":
            return int((await self.readable_post(target_id, viewer))["author_id"])
        comment, _ = await self.readable_comment(target_id, viewer)
        return int(comment["author_id"])

    async def remove_reported(self, kind: str, target_id: int, viewer: Viewer) -> None:
        """A moderator resolving a report with "delete": the post or comment goes (if still there)."""
        table = posts if kind == "post" else post_comments
        row = await self.db.fetch_one(f"feed.{kind}", sa.select(table).where(table.c.id == target_id))
        if row is None or row["deleted"]:
            return
        await (self.remove_post(row, viewer) if kind == "post" else self.remove_comment(row, viewer))

    # --- live ------------------------------------------------------------------------------------
    async def may_read_stream(self, user: ConnUser, key: str) -> bool:
        """`live:post:<id>`: whoever may see the post."""
        if not (key.isascii() and key.isdigit()) or len(key) > 18:
            return False
        row = await self.db.fetch_one("feed.post", sa.select(posts).where(posts.c.id == int(key)))
        return await self.may_read(row, Viewer.of(user))


async def _everyone(user: ConnUser, key: str) -> bool:
    """`live:feed:everyone`: every signed-in member."""
    return key == "everyone"


def attach(resources: Any, settings: Any) -> None:
    """Wire this area into the app's resources (called at the end of Resources.build)."""
    resources.feed = Feed(resources)
    resources.live.register("feed", _everyone)
    resources.live.register("post", resources.feed.may_read_stream)
