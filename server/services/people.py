"""Members as other members see them: profiles, who is online, and friends told when that changes.

Online state comes from the realtime presence records (the ones the connection cap counts), so it
is cluster-wide. It is shown to the member, their friends and members who share a room with them;
anyone else gets `online: null`. Friends hear about it live: the first connection of a user on a
replica announces "online" to their friends (a repeat is harmless), the last connection of a user
anywhere (counted after this replica's record is gone) announces "offline" and stamps
`last_seen_at`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import channel_members, channels, ranks, users
from server.db.types import utcnow
from server.media.urls import avatar_urls
from server.notifications.online import has_live_connection, live_users
from server.observability.logging import get_logger
from server.services.friend_presence import OFFLINE_GRACE_SECONDS, FriendPresence
from server.services.relations import FRIENDS, PERSON_COLUMNS, Relations, public_view
from server.services.xp import progress

log = get_logger("vonix.people")

Spawn = Callable[[Coroutine[Any, Any, Any], str], None]
BADGES = {"admin": "admin", "moderator": "moderator", "bot": "bot"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class People:
    def __init__(self, db: Database, relations: Relations, node: Any, avatar_template: str,
                 spawn: Spawn, metrics: Any = None, offline_grace: float = OFFLINE_GRACE_SECONDS,
                 daily_login: bool = True) -> None:
        self.db = db
        self.relations = relations
        self.node = node
        self.avatar_template = avatar_template
        self.spawn = spawn
        self._xp_events = metrics.counter(
            "vonix_xp_events_total", "Actions that earn XP, by action (awarded by the XP system).",
            ("action",)) if metrics is not None else None
        self.xp: Any = None  # set by Resources.build: the XP system
        self.daily_login = daily_login
        self._visits_day: date | None = None
        self._visited: set[int] = set()
        self.presence = FriendPresence(db, spawn, self.publish, self._still_connected, offline_grace)
        relations.person = self.person
        relations.xp = self.xp_event

    # --- shapes ------------------------------------------------------------------------------
    def person(self, row: Any) -> dict[str, Any]:
        """A member as lists show them (friends, requests, reactions)."""
        return {"username": row["username"], "display_name": row["display_name"],
                "avatar": avatar_urls(self.avatar_template, row), "role": row["role"]}

    async def authors(self, user_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Members as bylines show them (forum, feed, groups, events): `person` plus `level` and
        `rank` (`{name, colour, badge}` or null), for many ids in one query. A deleted member is
        missing from the result: callers show them as "deleted"."""
        ids = list(set(user_ids))
        if not ids:
            return {}
        query = sa.select(*PERSON_COLUMNS, users.c.level, ranks.c.name.label("rank_name"),
                          ranks.c.colour.label("rank_colour"), ranks.c.badge.label("rank_badge")).select_from(
            users.outerjoin(ranks, ranks.c.id == users.c.rank_id)).where(users.c.id.in_(ids))
        return {row["id"]: {**self.person(row), "level": row["level"],
                            "rank": {"name": row["rank_name"], "colour": row["rank_colour"],
                                     "badge": row["rank_badge"]} if row["rank_name"] else None}
                for row in await self.db.fetch_all("users.authors", query)}

    async def profile(self, viewer_id: int, row: Any) -> dict[str, Any]:
        me = viewer_id == row["id"]
        state = "self" if me else public_view(await self.relations.state(viewer_id, row["id"]))
        visible = me or state == FRIENDS or await self.share_a_room(viewer_id, row["id"])
        online = await has_live_connection(self.node, row["id"]) if visible else None
        refusal = None if me else await self.relations.dm_refusal(viewer_id, row["id"])
        result = {
            **self.person(row),
            "bio": row["bio"],
            "badges": [BADGES[row["role"]]] if row["role"] in BADGES else [],
            "level": row["level"],
            "xp": row["xp"],
            "progress": progress(int(row["xp"])),
            "rank": await self.rank_of(row["rank_id"]),
            "joined_at": _iso(row["created_at"]),
            "online": online,
            "last_seen_at": _iso(row["last_seen_at"]) if visible else None,
            "minecraft": {"name": row["minecraft_username"], "uuid": row["minecraft_uuid"]}
            if row["minecraft_uuid"] else None,
            "relationship": state,
            "can_dm": not me and refusal is None and row["role"] != "bot",
        }
        if me:
            result["dm_policy"] = row["dm_policy"]
        return result

    async def rank_of(self, rank_id: int | None) -> dict[str, Any] | None:
        if rank_id is None:
            return None
        row = await self.db.fetch_one("ranks.by_id", sa.select(ranks.c.name, ranks.c.colour, ranks.c.badge).where(
            ranks.c.id == rank_id))
        return None if row is None else {"name": row["name"], "colour": row["colour"], "badge": row["badge"]}

    async def share_a_room(self, a: int, b: int) -> bool:
        theirs = channel_members.alias("theirs")
        query = sa.select(channel_members.c.channel_id).select_from(
            channel_members.join(theirs, theirs.c.channel_id == channel_members.c.channel_id)
            .join(channels, channels.c.id == channel_members.c.channel_id)).where(
            channel_members.c.user_id == a, theirs.c.user_id == b,
            channels.c.kind.in_(("room", "private_room"))).limit(1)
        return await self.db.fetch_val("people.share_a_room", query) is not None

    async def friends_with_presence(self, rows: list[Any]) -> list[dict[str, Any]]:
        result = []
        for row in rows:
            online = await has_live_connection(self.node, row["id"])
            result.append({**self.person(row), "online": online, "last_seen_at": _iso(row["last_seen_at"])})
        result.sort(key=lambda friend: not friend["online"])  # online first, then by name (stable)
        return result

    # --- events ------------------------------------------------------------------------------
    async def publish(self, user_id: int, data: dict[str, Any]) -> None:
        """Live on the personal channel; an outage is logged (the change is stored either way)."""
        try:
            await self.node.publish(f"user:{user_id}", data)
        except Exception as exc:
            log.warning("people_live_push_failed", user_id=user_id, error=exc.__class__.__name__)

    def xp_event(self, user_id: int, action: str, source_id: str) -> None:
        """Something that earns XP happened (server/services/xp.py awards it, once per source)."""
        if self._xp_events is not None:
            self._xp_events.labels(action).inc()
        if self.xp is not None:
            self.spawn(self.xp.award(user_id, action, source_id), "xp-award")

    def visited(self, user_id: int) -> None:
        """A member signed in or refreshed their session (what opening the app does): the day's
        first visit earns the daily-login XP. Checked against this replica's memory of who
        already visited today, so the award's read and write happen about once per member per
        day (the XP table's uniqueness makes repeats on other replicas harmless)."""
        today = utcnow().date()
        if self._visits_day != today:
            self._visits_day, self._visited = today, set()
        if user_id in self._visited or self.xp is None or not self.daily_login:
            return
        self._visited.add(user_id)
        self.spawn(self.xp.daily_login(user_id), "xp-daily-login")

    def user_online(self, user_id: int) -> None:
        """The user's first connection on this replica (called by the realtime node; returns at once):
        friends are told, in a batch (`friend_presence.py`). (The daily-visit XP is not awarded here:
        a write transaction per member's first connection cost the connect path dearly in
        `make bench`; see Xp.daily_login.)"""
        self.presence.online(user_id)

    async def check_profile_complete(self, user_id: int) -> None:
        """+25 XP, once, when a member has a display name, a bio and a picture."""
        row = await self.db.fetch_one("users.profile_fields", sa.select(
            users.c.display_name, users.c.bio, users.c.avatar_url, users.c.minecraft_uuid).where(users.c.id == user_id))
        if self.xp is not None and row is not None and row["display_name"] and row["bio"] \
                and (row["avatar_url"] or row["minecraft_uuid"]):
            await self.xp.award(user_id, "profile_completed", "profile")

    async def _still_connected(self, user_ids: Sequence[int]) -> set[int]:
        return await live_users(self.node, user_ids)

    def user_offline(self, user_id: int) -> None:
        """The user's last connection on this replica is gone (friends hear it after a grace)."""
        self.presence.offline(user_id)
