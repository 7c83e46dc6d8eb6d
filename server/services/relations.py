"""Friends and blocks between two members: the state machine, who may DM whom, and live events.

`friendships` holds one row per direction: an accepted friendship is two `accepted` rows, a
request is one `pending` row from the requester, a block is one `blocked` row from the blocker
(a block removes everything else between the two, except the other side's own block). So "who
are my friends" and "whom did I block" are one range scan on the primary key, and "who asked
me" / "who blocked me" one scan of the `(friend_id, status)` index.

A member never learns that someone blocked them: to the blocked side the pair looks like "none",
and what the block refuses (a friend request, a DM) answers with the same refusal as a DM
setting would.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import friendships, users
from server.db.types import utcnow
from server.observability.logging import get_logger

log = get_logger("vonix.relations")

FRIENDS, OUTGOING, INCOMING, BLOCKED, BLOCKED_BY, NONE = (
    "friends", "outgoing", "incoming", "blocked", "blocked_by", "none")
DM_BLOCKED, DM_NOT_ALLOWED = "dm_blocked", "dm_not_allowed"

Publish = Callable[[int, dict[str, Any]], Coroutine[Any, Any, None]]
PersonOf = Callable[[Any], dict[str, Any]]
XpHook = Callable[[int, str, str], None]


class RelationError(Exception):
    """A refused change; `code` is the API's error code, `status` its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def public_view(state: str) -> str:
    """What a member is shown: being blocked looks like no relation at all."""
    return NONE if state == BLOCKED_BY else state


@dataclass(frozen=True, slots=True)
class Pair:
    """The rows between `me` and `other`: my row towards them and theirs towards me."""

    mine: str | None
    theirs: str | None

    @property
    def state(self) -> str:
        if self.mine == "blocked":
            return BLOCKED
        if self.theirs == "blocked":
            return BLOCKED_BY
        if self.mine == "accepted":
            return FRIENDS
        if self.mine == "pending":
            return OUTGOING
        if self.theirs == "pending":
            return INCOMING
        return NONE


PERSON_COLUMNS = (users.c.id, users.c.username, users.c.display_name, users.c.avatar_url, users.c.role,
                  users.c.minecraft_uuid, users.c.minecraft_username, users.c.last_seen_at)


class Relations:
    def __init__(self, db: Database, cache: Any = None) -> None:
        self.db = db
        self.cache = cache
        self._gate_ns = cache.namespace("dmgate") if cache is not None else None
        self.publish: Publish | None = None  # set by Resources.build: live events on user:<id>
        self.person: PersonOf = lambda row: {"username": row["username"]}
        self.xp: XpHook = lambda user_id, action, source_id: None

    # --- reads -------------------------------------------------------------------------------
    async def pair(self, me: int, other: int) -> Pair:
        rows = await self.db.fetch_all("friends.pair", sa.select(
            friendships.c.user_id, friendships.c.status).where(sa.or_(
                sa.and_(friendships.c.user_id == me, friendships.c.friend_id == other),
                sa.and_(friendships.c.user_id == other, friendships.c.friend_id == me))))
        mine = next((r["status"] for r in rows if r["user_id"] == me), None)
        theirs = next((r["status"] for r in rows if r["user_id"] == other), None)
        return Pair(mine, theirs)

    async def state(self, me: int, other: int) -> str:
        return (await self.pair(me, other)).state

    async def friend_ids(self, user_id: int) -> list[int]:
        rows = await self.db.fetch_all("friends.ids", sa.select(friendships.c.friend_id).where(
            friendships.c.user_id == user_id, friendships.c.status == "accepted"))
        return [r["friend_id"] for r in rows]

    async def lists(self, user_id: int) -> dict[str, list[Any]]:
        """The user rows of friends, incoming and outgoing requests and blocked members."""
        mine = sa.select(friendships.c.status, *PERSON_COLUMNS).select_from(
            friendships.join(users, users.c.id == friendships.c.friend_id)).where(
            friendships.c.user_id == user_id, users.c.status == "active")
        incoming = sa.select(*PERSON_COLUMNS).select_from(
            friendships.join(users, users.c.id == friendships.c.user_id)).where(
            friendships.c.friend_id == user_id, friendships.c.status == "pending", users.c.status == "active")
        result: dict[str, list[Any]] = {"friends": [], "outgoing": [], "blocked": [], "incoming": []}
        key = {"accepted": "friends", "pending": "outgoing", "blocked": "blocked"}
        for row in await self.db.fetch_all("friends.mine", mine.order_by(sa.func.lower(users.c.username))):
            result[key[row["status"]]].append(row)
        result["incoming"] = list(await self.db.fetch_all(
            "friends.incoming", incoming.order_by(sa.func.lower(users.c.username))))
        return result

    async def blockers_of(self, author_id: int, user_ids: Iterable[int]) -> set[int]:
        """Which of `user_ids` blocked `author_id` (they are not notified of what the author writes)."""
        ids = list(user_ids)
        if not ids:
            return set()
        rows = await self.db.fetch_all("blocks.blockers", sa.select(friendships.c.user_id).where(
            friendships.c.friend_id == author_id, friendships.c.status == "blocked",
            friendships.c.user_id.in_(ids)))
        return {r["user_id"] for r in rows}

    async def dm_refusal(self, sender: int, recipient: int) -> str | None:
        """Why `sender` may not message `recipient` directly (a block either way, or the
        recipient's friends-only setting), None when they may. Cached: every DM publish asks."""
        if self.cache is None or self._gate_ns is None:
            return await self._load_dm_refusal(sender, recipient)
        low, high = sorted((sender, recipient))
        return await self.cache.get(  # type: ignore[no-any-return]
            self._gate_ns, f"{sender}:{recipient}", lambda: self._load_dm_refusal(sender, recipient),
            tags=[f"pair:{low}:{high}", f"dmpolicy:{recipient}"])

    async def _load_dm_refusal(self, sender: int, recipient: int) -> str | None:
        state = await self.state(sender, recipient)
        if state in (BLOCKED, BLOCKED_BY):
            return DM_BLOCKED
        if state == FRIENDS:
            return None
        policy = await self.db.fetch_val("users.dm_policy", sa.select(users.c.dm_policy).where(
            users.c.id == recipient))
        return DM_NOT_ALLOWED if policy == "friends" else None

    async def dm_policy_changed(self, user_id: int) -> None:
        if self.cache is not None:
            await self.cache.invalidate(tags=[f"dmpolicy:{user_id}"])

    # --- changes (me acting on other) ---------------------------------------------------------
    async def request(self, me: Any, other: Any) -> str:
        """Send a friend request; accepting theirs when they already asked. Returns my new view."""
        if me["id"] == other["id"]:
            raise RelationError(400, "friend_self", "You cannot befriend yourself.")
        state = await self.state(me["id"], other["id"])
        if state == BLOCKED:
            raise RelationError(409, "user_blocked", "You blocked this member; unblock them first.")
        if state == BLOCKED_BY:
            raise RelationError(403, "friend_request_refused", "You cannot send this member a friend request.")
        if state == FRIENDS:
            raise RelationError(409, "already_friends", "You are already friends.")
        if state == OUTGOING:
            return OUTGOING
        if state == INCOMING:
            return await self.accept(me, other)
        await self.db.execute("friends.request", friendships.insert().values(
            user_id=me["id"], friend_id=other["id"], status="pending", created_at=utcnow()))
        await self._changed(me, other)
        return OUTGOING

    async def accept(self, me: Any, other: Any) -> str:
        if await self.state(me["id"], other["id"]) != INCOMING:
            raise RelationError(404, "request_not_found", "This member has not sent you a friend request.")
        now = utcnow()
        async with self.db.transaction():
            await self.db.execute("friends.accept", friendships.update().where(
                friendships.c.user_id == other["id"], friendships.c.friend_id == me["id"],
                friendships.c.status == "pending").values(status="accepted", accepted_at=now))
            await self.db.execute("friends.accept_mine", friendships.insert().values(
                user_id=me["id"], friend_id=other["id"], status="accepted", created_at=now, accepted_at=now))
        await self._changed(me, other)
        for user_id, friend_id in ((me["id"], other["id"]), (other["id"], me["id"])):
            self.xp(user_id, "friend_accepted", f"friend:{friend_id}")  # once per friend, ever
            self.xp(user_id, "first_friend", "first")
        return FRIENDS

    async def decline(self, me: Any, other: Any) -> None:
        if await self.state(me["id"], other["id"]) != INCOMING:
            raise RelationError(404, "request_not_found", "This member has not sent you a friend request.")
        await self._delete("friends.decline", other["id"], me["id"], "pending")
        await self._changed(me, other)

    async def remove(self, me: Any, other: Any) -> None:
        """Unfriend, or cancel my pending request."""
        state = await self.state(me["id"], other["id"])
        if state == FRIENDS:
            async with self.db.transaction():
                await self._delete("friends.remove", me["id"], other["id"], "accepted")
                await self._delete("friends.remove", other["id"], me["id"], "accepted")
        elif state == OUTGOING:
            await self._delete("friends.cancel", me["id"], other["id"], "pending")
        else:
            raise RelationError(404, "friend_not_found", "This member is not your friend and has no request from you.")
        await self._changed(me, other)

    async def block(self, me: Any, other: Any) -> str:
        if me["id"] == other["id"]:
            raise RelationError(400, "block_self", "You cannot block yourself.")
        pair = await self.pair(me["id"], other["id"])
        if pair.mine == "blocked":
            return BLOCKED
        async with self.db.transaction():
            await self.db.execute("blocks.clear", friendships.delete().where(
                friendships.c.user_id == me["id"], friendships.c.friend_id == other["id"]))
            if pair.theirs in ("accepted", "pending"):
                await self._delete("blocks.clear_theirs", other["id"], me["id"], pair.theirs)
            await self.db.execute("blocks.insert", friendships.insert().values(
                user_id=me["id"], friend_id=other["id"], status="blocked", created_at=utcnow()))
        await self._changed(me, other)
        return BLOCKED

    async def unblock(self, me: Any, other: Any) -> None:
        if (await self.pair(me["id"], other["id"])).mine != "blocked":
            raise RelationError(404, "block_not_found", "You have not blocked this member.")
        await self._delete("blocks.delete", me["id"], other["id"], "blocked")
        await self._changed(me, other)

    async def _delete(self, name: str, user_id: int, friend_id: int, status: str) -> None:
        await self.db.execute(name, friendships.delete().where(
            friendships.c.user_id == user_id, friendships.c.friend_id == friend_id, friendships.c.status == status))

    async def _changed(self, me: Any, other: Any) -> None:
        """After a commit: forget cached DM gates of the pair; tell both sides (each their own view)."""
        if self.cache is not None:
            low, high = sorted((me["id"], other["id"]))
            await self.cache.invalidate(tags=[f"pair:{low}:{high}"])
        pair = await self.pair(me["id"], other["id"])
        views = {me["id"]: (other, pair.state), other["id"]: (me, Pair(pair.theirs, pair.mine).state)}
        if self.publish is None:
            return
        for user_id, (person, state) in views.items():
            await self.publish(user_id, {"type": "relationship", "user": self.person(person),
                                         "relationship": public_view(state)})
