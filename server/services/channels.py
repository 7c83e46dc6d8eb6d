"""Channels as the database knows them: rooms, private rooms and DMs, with members and roles.

Realtime channel names map to rows: `room:<name>` (kind room or private_room), `dm:<a>:<b>` (the
two user ids, smaller first). `user:<id>` and `bot:<name>` channels are ephemeral and have no row.

With a cache attached, what every subscribe and publish checks is cached: a channel's metadata
(`channel:<name>`, tag `channel:<name>`, unknown names too) and a user's membership
(`member:<channel id>:<user id>`, tags `channel:<name>` and `member:<channel id>:<user id>`). The
writers here invalidate those tags after their commit. The last offset is never cached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from realtime.batching import Batcher
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import channel_members, channels, messages, messages_archive, users
from server.db.types import utcnow

ROOM_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
PERSISTED_NAMESPACES = ("room:", "dm:")
TOPIC_MAX = 500
UNREAD_CAP = 100  # "99+" is all a badge shows
MEMBERS_MAX = 1000  # a room's member list is one page: rooms here are community-sized
_ROLE_RANK = {"owner": 0, "moderator": 1, "member": 2}


@dataclass(frozen=True, slots=True)
class ChannelMeta:
    """What rarely changes about a channel (cacheable); `ChannelRow` adds the live last offset."""

    id: int
    name: str
    kind: str
    title: str | None
    topic: str | None
    slow_mode: int = 0  # seconds between two messages of a member (moderators exempt); 0: off

    @property
    def epoch(self) -> str:
        """Persisted channels never lose history (the database keeps it): a fixed epoch."""
        return f"db{self.id}"

    @property
    def private(self) -> bool:
        return self.kind in ("private_room", "dm")


@dataclass(frozen=True, slots=True)
class ChannelRow(ChannelMeta):
    last_offset: int = 0


def dm_channel(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"dm:{low}:{high}"


def dm_members(channel: str) -> tuple[int, int] | None:
    parts = channel.split(":")
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    low, high = int(parts[1]), int(parts[2])
    return (low, high) if low < high else None


def _row(row: Any) -> ChannelRow:
    return ChannelRow(row["id"], row["name"], row["kind"], row["title"], row["topic"],
                      slow_mode=row["slow_mode_seconds"], last_offset=row["last_offset"])


def _meta_data(meta: ChannelMeta | None) -> Any:
    return None if meta is None else [meta.id, meta.name, meta.kind, meta.title, meta.topic, meta.slow_mode]


def _meta_value(data: Any) -> ChannelMeta | None:
    return None if data is None else ChannelMeta(*data)


def _membership_data(membership: tuple[str, Any] | None) -> Any:
    if membership is None:
        return None
    role, muted_until = membership
    return [role, muted_until.timestamp() if muted_until is not None else None]


def _membership_value(data: Any) -> tuple[str, Any] | None:
    if data is None:
        return None
    return data[0], datetime.fromtimestamp(data[1], UTC) if data[1] is not None else None


class Channels:
    def __init__(self, db: Database, cache: Any = None) -> None:
        self.db = db
        self.cache: Any = None
        # Memberships the cache misses together are read together: after a restart the first
        # message of every member of every room misses at once (thousands), one query per crowd.
        self._member_loads: Batcher[tuple[int, int], tuple[str, Any] | None] = Batcher(
            self._member_roles_many, max_batch=500)
        if cache is not None:
            self.attach_cache(cache)

    def attach_cache(self, cache: Any) -> None:
        self.cache = cache
        self._meta_ns = cache.namespace("channel", encode=_meta_data, decode=_meta_value, loader=self._load_meta,
                                        tagger=lambda name, _meta: [f"channel:{name}"])
        self._member_ns = cache.namespace("member", encode=_membership_data, decode=_membership_value)

    async def by_name(self, name: str) -> ChannelRow | None:
        """The row as stored now, last offset included (never cached)."""
        row = await self.db.fetch_one("channels.by_name", sa.select(channels).where(channels.c.name == name))
        return _row(row) if row else None

    async def meta(self, name: str) -> ChannelMeta | None:
        """The channel's metadata, from the cache when one is attached (None: no such channel)."""
        if self.cache is None:
            return await self.by_name(name)
        return await self.cache.get(self._meta_ns, name, lambda: self._load_meta(name))  # type: ignore[no-any-return]

    async def _load_meta(self, name: str) -> ChannelMeta | None:
        row = await self.by_name(name)
        return None if row is None else ChannelMeta(row.id, row.name, row.kind, row.title, row.topic, row.slow_mode)

    async def last_offset(self, channel_id: int) -> int:
        value = await self.db.fetch_val("channels.last_offset", sa.select(channels.c.last_offset).where(
            channels.c.id == channel_id))
        return int(value or 0)

    async def membership(self, channel: ChannelMeta, user_id: int) -> tuple[str, Any] | None:
        """`member_role`, cached when a cache is attached (what every publish checks)."""
        if self.cache is None:
            return await self.member_role(channel.id, user_id)
        return await self.cache.get(  # type: ignore[no-any-return]
            self._member_ns, f"{channel.id}:{user_id}", lambda: self._member_loads((channel.id, user_id)),
            tags=[f"channel:{channel.name}", f"member:{channel.id}:{user_id}"])

    async def _forget(self, *tags: str) -> None:
        if self.cache is not None:
            await self.cache.invalidate(tags=tags)

    async def _member_roles_many(self, pairs: Sequence[tuple[int, int]]) -> list[tuple[str, Any] | None]:
        """`member_role` of each (channel, user) pair, in one query."""
        rows = await self.db.fetch_all("channels.members_many", sa.select(
            channel_members.c.channel_id, channel_members.c.user_id, channel_members.c.role,
            channel_members.c.muted_until).where(
            channel_members.c.channel_id.in_(sorted({c for c, _ in pairs})),
            channel_members.c.user_id.in_(sorted({u for _, u in pairs}))))
        found = {(row["channel_id"], row["user_id"]): (row["role"], row["muted_until"]) for row in rows}
        return [found.get(pair) for pair in pairs]

    async def member_role(self, channel_id: int, user_id: int) -> tuple[str, Any] | None:
        row = await self.db.fetch_one("channels.member", sa.select(
            channel_members.c.role, channel_members.c.muted_until).where(
            channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id))
        return (row["role"], row["muted_until"]) if row else None

    async def create_room(self, name: str, *, owner_id: int, private: bool, topic: str | None,
                          title: str | None = None) -> ChannelRow:
        """A room and its owner's membership; `title` (what lists show) defaults to the name."""
        now = utcnow()
        async with self.db.transaction():
            channel_id = await self.db.fetch_val("channels.insert", channels.insert().values(
                name=f"room:{name}", kind="private_room" if private else "room", title=title or name, topic=topic,
                owner_id=owner_id, last_offset=0, created_at=now).returning(channels.c.id))
            await self._insert_member(int(channel_id), owner_id, "owner")
        await self._forget(f"channel:room:{name}")
        created = await self.by_name(f"room:{name}")
        assert created is not None
        return created

    async def add_member(self, channel_id: int, user_id: int, role: str = "member") -> bool:
        added = await self._insert_member(channel_id, user_id, role)
        if added:
            await self._forget(f"member:{channel_id}:{user_id}")
        return added

    async def _insert_member(self, channel_id: int, user_id: int, role: str) -> bool:
        try:
            await self.db.execute("channels.add_member", channel_members.insert().values(
                channel_id=channel_id, user_id=user_id, role=role, joined_at=utcnow()))
        except UniqueViolation:
            return False
        return True

    async def remove_member(self, channel_id: int, user_id: int) -> None:
        await self.db.execute("channels.remove_member", channel_members.delete().where(
            channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id))
        await self._forget(f"member:{channel_id}:{user_id}")

    async def set_role(self, channel_id: int, user_id: int, role: str) -> bool:
        changed = await self.db.fetch_all("channels.set_role", channel_members.update().where(
            channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id,
            channel_members.c.role != "owner").values(role=role).returning(channel_members.c.user_id))
        await self._forget(f"member:{channel_id}:{user_id}")
        return bool(changed)

    async def ensure_dm(self, a: int, b: int) -> ChannelRow:
        name = dm_channel(a, b)
        existing = await self.by_name(name)
        if existing is not None:
            return existing
        try:
            async with self.db.transaction():
                channel_id = await self.db.fetch_val("channels.insert_dm", channels.insert().values(
                    name=name, kind="dm", last_offset=0, created_at=utcnow()).returning(channels.c.id))
                for user_id in {a, b}:
                    await self.db.execute("channels.add_member", channel_members.insert().values(
                        channel_id=channel_id, user_id=user_id, role="member", joined_at=utcnow()))
        except UniqueViolation:
            pass  # created concurrently
        await self._forget(f"channel:{name}")
        created = await self.by_name(name)
        assert created is not None
        return created

    async def visible_rooms(self, user_id: int) -> list[Any]:
        """Public rooms and the private rooms/DMs the user belongs to, with unread counts."""
        membership = sa.select(channel_members.c.channel_id, channel_members.c.last_read_offset,
                               channel_members.c.role).where(channel_members.c.user_id == user_id).subquery()
        query = (
            sa.select(channels.c.id, channels.c.name, channels.c.kind, channels.c.title, channels.c.topic,
                      channels.c.last_offset, channels.c.slow_mode_seconds, membership.c.role,
                      membership.c.last_read_offset)
            .select_from(channels.outerjoin(membership, membership.c.channel_id == channels.c.id))
            .where(channels.c.archived_at.is_(None), sa.or_(channels.c.kind == "room",
                                                              membership.c.channel_id.isnot(None)))
            .order_by(channels.c.name)
        )
        return await self.db.fetch_all("channels.visible", query)

    async def room_view(self, name: str, user_id: int) -> Any | None:
        """One room as the room list shows it (caller's role and read marker), never cached."""
        membership = sa.select(channel_members.c.channel_id, channel_members.c.last_read_offset,
                               channel_members.c.role).where(channel_members.c.user_id == user_id).subquery()
        query = (
            sa.select(channels.c.id, channels.c.name, channels.c.kind, channels.c.title, channels.c.topic,
                      channels.c.last_offset, channels.c.slow_mode_seconds, membership.c.role,
                      membership.c.last_read_offset)
            .select_from(channels.outerjoin(membership, membership.c.channel_id == channels.c.id))
            .where(channels.c.name == name, channels.c.archived_at.is_(None),
                   channels.c.kind.in_(("room", "private_room")))
        )
        return await self.db.fetch_one("channels.room_view", query)

    async def members(self, channel_id: int) -> list[dict[str, Any]]:
        """The channel's members, owner first, then moderators, then by name (one bounded page)."""
        rows = await self.db.fetch_all("channels.members", sa.select(
            users.c.id, users.c.username, channel_members.c.role,
        ).select_from(channel_members.join(users, users.c.id == channel_members.c.user_id)).where(
            channel_members.c.channel_id == channel_id).limit(MEMBERS_MAX))
        listed = [{"id": r["id"], "username": r["username"], "role": r["role"]} for r in rows]
        listed.sort(key=lambda m: (_ROLE_RANK.get(m["role"], 3), m["username"].lower()))
        return listed

    async def set_topic(self, channel: ChannelMeta, topic: str | None) -> None:
        """Change the topic; the cached metadata of every replica forgets the old one."""
        await self.db.execute("channels.set_topic", channels.update().where(
            channels.c.id == channel.id).values(topic=topic))
        await self._forget(f"channel:{channel.name}")

    async def set_slow_mode(self, channel: ChannelMeta, seconds: int) -> None:
        await self.db.execute("channels.set_slow_mode", channels.update().where(
            channels.c.id == channel.id).values(slow_mode_seconds=seconds))
        await self._forget(f"channel:{channel.name}")

    async def unread_counts(self, markers: dict[int, tuple[int, int]]) -> dict[int, int]:
        """Unread messages per channel ({channel id: (read marker, last offset)}), at most
        UNREAD_CAP each: messages after the marker that still say something. Edits, deletes and
        reactions have offsets of their own (body NULL) and are not "new messages"; neither is a
        message deleted before it was read. One statement, one bounded index range per channel."""
        pending = {cid: read for cid, (read, last) in markers.items() if last > read}
        if not pending:
            return {cid: 0 for cid in markers}
        ids = list(pending)
        columns = []
        for index, cid in enumerate(ids):
            window = sa.select(messages.c.id).where(
                messages.c.channel_id == cid, messages.c.offset > pending[cid],
                messages.c.body.isnot(None)).limit(UNREAD_CAP).subquery()
            columns.append(sa.select(sa.func.count()).select_from(window).scalar_subquery().label(f"c{index}"))
        row = await self.db.fetch_one("channels.unread_counts", sa.select(*columns))
        counts = {cid: int(row[f"c{index}"]) for index, cid in enumerate(ids)}
        return {cid: counts.get(cid, 0) for cid in markers}

    async def last_messages(self, positions: dict[int, int]) -> dict[int, Any]:
        """The last message of each channel ({channel id: last offset}), live or archived.

        Usually one probe of the (channel_id, offset) unique index per channel; when the last
        offset is an event (edit, delete, reaction) or a deleted message, the newest message that
        still says something is looked up for that channel. Channels with no message are skipped.
        """
        found = await self._messages_at(positions)
        for cid, row in list(found.items()):
            if row["body"] is None:
                del found[cid]
                newest = await self.db.fetch_one("channels.last_saying", sa.select(
                    messages.c.channel_id, messages.c.author_id, messages.c.body, messages.c.data,
                    messages.c.created_at, messages.c.deleted_at).where(
                    messages.c.channel_id == cid, messages.c.body.isnot(None)).order_by(
                    messages.c.offset.desc()).limit(1))
                if newest is not None:
                    found[cid] = newest
        return found

    async def _messages_at(self, positions: dict[int, int]) -> dict[int, Any]:
        wanted = {cid: off for cid, off in positions.items() if off > 0}
        found: dict[int, Any] = {}
        for table, label in ((messages, "channels.last_messages"),
                             (messages_archive, "channels.last_messages_archive")):
            missing = {cid: off for cid, off in wanted.items() if cid not in found}
            if not missing:
                break
            rows = await self.db.fetch_all(label, sa.select(
                table.c.channel_id, table.c.author_id, table.c.body, table.c.data, table.c.created_at,
                table.c.deleted_at,
            ).where(sa.or_(*(sa.and_(table.c.channel_id == cid, table.c.offset == off)
                             for cid, off in missing.items()))))
            found.update({r["channel_id"]: r for r in rows})
        return found
