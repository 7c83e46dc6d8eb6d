"""Moderators' tools: mutes and bans (timed or permanent, in a room or site-wide), kicks, slow mode.

Every publish and subscribe asks whether the user is sanctioned, so a user's active sanctions are
one cached entry (`sanctions:<user id>`, nearly always an empty list), invalidated on every replica
when a moderator acts; an entry past its `until` simply stops applying, nothing needs to expire it.

Effects are live and cluster-wide through the realtime node's evictions: a kicked or room-banned
user's connections are unsubscribed from the room on every replica (a `removed` push says why), a
site ban closes all their connections (4007) and revokes their sessions; the user's own channel
gets a `sanction` event so their other screens say what happened and until when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from realtime import errors
from realtime.connection import ConnUser
from realtime.errors import ReplyError
from server.auth import audit, rbac
from server.db.database import Database
from server.db.tables import channels, sanctions, users
from server.db.types import utcnow
from server.observability.logging import get_logger
from server.services.channels import ChannelMeta, Channels

log = get_logger("vonix.moderation")

# How much say someone has over a member of a room: they act only on those below them.
SITE_RANK = {"admin": 4, "moderator": 3}
ROOM_RANK = {"owner": 2, "moderator": 1}


@dataclass(frozen=True, slots=True)
class Sanction:
    id: int
    kind: str  # mute | ban
    channel_id: int | None  # None: site-wide
    until: datetime | None  # None: permanent

    def applies(self, channel_id: int | None, now: datetime) -> bool:
        return (self.until is None or self.until > now) and (self.channel_id is None or self.channel_id == channel_id)


def _encode(items: list[Sanction]) -> list[list[Any]]:
    return [[s.id, s.kind, s.channel_id, s.until.timestamp() if s.until else None] for s in items]


def _decode(data: list[list[Any]]) -> list[Sanction]:
    return [Sanction(i, k, c, datetime.fromtimestamp(u, UTC) if u is not None else None) for i, k, c, u in data]


def _when(value: datetime | None) -> str:
    return "for good" if value is None else f"until {value.isoformat(timespec='seconds')}"


class Sanctions:
    def __init__(self, db: Database, channels_: Channels, cache: Any = None) -> None:
        self.db = db
        self.channels = channels_
        self.cache = cache
        self._ns = cache.namespace("sanctions", encode=_encode, decode=_decode) if cache is not None else None
        # Who has any active sanction at all: one entry for everyone, so the first publish of each
        # of thousands of members after a restart costs no query of its own (nearly nobody is in it).
        self._any_ns = cache.namespace("sanctioned", strict=True, encode=sorted,
                                       decode=frozenset) if cache is not None else None
        self.node: Any = None  # set by Resources.build: evictions
        self.publish: Any = None  # set by Resources.build: events on user:<id>
        self.revoke_sessions: Any = None  # set by Resources.build: a site ban signs the user out everywhere

    # --- the checks every publish and subscribe makes --------------------------------------------
    async def active(self, user_id: int) -> list[Sanction]:
        if self.cache is None or self._ns is None:
            return await self._load(user_id)
        return await self.cache.get(  # type: ignore[no-any-return]
            self._ns, str(user_id), lambda: self._load(user_id), tags=[f"sanctions:{user_id}"])

    async def _load(self, user_id: int) -> list[Sanction]:
        rows = await self.db.fetch_all("sanctions.active", sa.select(
            sanctions.c.id, sanctions.c.kind, sanctions.c.channel_id, sanctions.c.until).where(
            sanctions.c.user_id == user_id, sanctions.c.lifted_at.is_(None),
            sa.or_(sanctions.c.until.is_(None), sanctions.c.until > utcnow())))
        return [Sanction(r["id"], r["kind"], r["channel_id"], r["until"]) for r in rows]

    async def sanctioned(self) -> frozenset[int]:
        """The users with an active sanction (or one that expired since the entry was read: their
        own entry says it no longer applies)."""
        if self.cache is None or self._any_ns is None:
            return await self._load_sanctioned()
        return await self.cache.get(  # type: ignore[no-any-return]
            self._any_ns, "all", self._load_sanctioned, tags=["sanctions:any"])

    async def _load_sanctioned(self) -> frozenset[int]:
        rows = await self.db.fetch_all("sanctions.users", sa.select(sanctions.c.user_id).distinct().where(
            sanctions.c.lifted_at.is_(None), sa.or_(sanctions.c.until.is_(None), sanctions.c.until > utcnow())))
        return frozenset(r["user_id"] for r in rows)

    async def check(self, user: ConnUser, channel_id: int | None, action: str) -> None:
        """Refuse a banned user everything on the channel and a muted one publishing (`amend`:
        edits and reactions too), with the time the sanction ends."""
        if user.kind != "user" or user.user_id not in await self.sanctioned():
            return
        found = await self.active(user.user_id)
        if not found:
            return
        now = utcnow()
        for sanction in found:
            if not sanction.applies(channel_id, now):
                continue
            where = "this site" if sanction.channel_id is None else "this room"
            if sanction.kind == "ban":
                raise ReplyError(errors.FORBIDDEN, f"you are banned from {where} {_when(sanction.until)}")
            if action in ("publish", "amend"):
                wait = (sanction.until - now).total_seconds() if sanction.until is not None else None
                raise ReplyError(errors.FORBIDDEN, f"you are muted in {where} {_when(sanction.until)}",
                                 temporary=wait is not None, retry_after=wait)

    # --- who may act on whom -------------------------------------------------------------------
    async def rank(self, user_id: int, role: str, row: ChannelMeta | None) -> int:
        if role in SITE_RANK:
            return SITE_RANK[role]
        if row is None or row.kind not in ("room", "private_room"):
            return 0
        membership = await self.channels.member_role(row.id, user_id)
        return ROOM_RANK.get(membership[0], 0) if membership else 0

    async def may_act(self, actor_id: int, actor_role: str, target: Any, row: ChannelMeta | None) -> bool:
        """Site staff anywhere, a room's owner and moderators in their room; only on members
        below them (a room moderator cannot mute the owner or site staff; nobody themselves)."""
        if actor_id == target["id"]:
            return False
        if row is None and not rbac.allowed(actor_role, "moderation.users.mute"):
            return False
        mine = await self.rank(actor_id, actor_role, row)
        return mine > 0 and mine > await self.rank(target["id"], target["role"], row)

    # --- acting --------------------------------------------------------------------------------
    async def impose(self, actor_id: int, target: Any, kind: str, row: ChannelMeta | None, minutes: int | None,
                     reason: str) -> dict[str, Any]:
        now = utcnow()
        until = now + timedelta(minutes=minutes) if minutes else None
        sanction_id = await self.db.fetch_val("sanctions.insert", sanctions.insert().values(
            kind=kind, user_id=target["id"], channel_id=row.id if row else None, until=until, reason=reason,
            created_by=actor_id, created_at=now).returning(sanctions.c.id))
        if kind == "ban" and row is not None:
            await self.channels.remove_member(row.id, target["id"])
        if kind == "ban" and row is None:
            await self.db.execute("sanctions.suspend", users.update().where(users.c.id == target["id"]).values(
                status="suspended", updated_at=now))
        await self._changed(target["id"])
        await audit.record(self.db, f"moderation.{kind}", actor_id=actor_id, target_type="user",
                           target_id=target["id"], channel=row.name if row else None,
                           until=until.isoformat() if until else None, reason=reason, sanction_id=sanction_id)
        item = self.describe(int(sanction_id), kind, row, until, reason)
        await self._tell(target["id"], {"type": "sanction", **item})
        if kind == "ban":
            await self.node.evict(target["id"], row.name if row else None, "banned")
            if row is None and self.revoke_sessions is not None:
                await self.revoke_sessions(target["id"], actor_id)
        return item

    async def lift(self, actor_id: int, sanction_id: int) -> Any:
        row = await self.db.fetch_one("sanctions.by_id", sa.select(sanctions).where(
            sanctions.c.id == sanction_id, sanctions.c.lifted_at.is_(None)))
        if row is None:
            return None
        now = utcnow()
        await self.db.execute("sanctions.lift", sanctions.update().where(sanctions.c.id == sanction_id).values(
            lifted_at=now, lifted_by=actor_id))
        if row["kind"] == "ban" and row["channel_id"] is None:
            await self.unsuspend_if_clear(row["user_id"])
        await self._changed(row["user_id"])
        await audit.record(self.db, f"moderation.{row['kind']}_lifted", actor_id=actor_id, target_type="user",
                           target_id=row["user_id"], sanction_id=sanction_id)
        await self._tell(row["user_id"], {"type": "sanction_lifted", "id": sanction_id})
        return row

    async def kick(self, actor_id: int, target: Any, row: ChannelMeta, reason: str) -> None:
        """Out of the room now (membership and live subscriptions); they may come back."""
        await self.channels.remove_member(row.id, target["id"])
        await audit.record(self.db, "moderation.kick", actor_id=actor_id, target_type="user",
                           target_id=target["id"], channel=row.name, reason=reason)
        await self.node.evict(target["id"], row.name, "kicked")

    async def unsuspend_if_clear(self, user_id: int) -> bool:
        """A suspended account whose site bans are all lifted or over is active again (called when
        a ban is lifted and when the user signs in after a timed ban ran out)."""
        self_banned = await self.db.fetch_val("sanctions.site_ban", sa.select(sanctions.c.id).where(
            sanctions.c.user_id == user_id, sanctions.c.kind == "ban", sanctions.c.channel_id.is_(None),
            sanctions.c.lifted_at.is_(None), sa.or_(sanctions.c.until.is_(None), sanctions.c.until > utcnow()))
            .limit(1))
        if self_banned is not None:
            return False
        changed = await self.db.fetch_all("sanctions.unsuspend", users.update().where(
            users.c.id == user_id, users.c.status == "suspended").values(status="active", updated_at=utcnow())
            .returning(users.c.id))
        return bool(changed)

    async def listing(self, user_id: int | None = None) -> list[dict[str, Any]]:
        query = sa.select(sanctions, users.c.username, channels.c.name.label("channel")).select_from(
            sanctions.join(users, users.c.id == sanctions.c.user_id)
            .outerjoin(channels, channels.c.id == sanctions.c.channel_id)).where(
            sanctions.c.lifted_at.is_(None), sa.or_(sanctions.c.until.is_(None), sanctions.c.until > utcnow()))
        if user_id is not None:
            query = query.where(sanctions.c.user_id == user_id)
        rows = await self.db.fetch_all("sanctions.list", query.order_by(sanctions.c.id.desc()).limit(200))
        return [{"id": r["id"], "kind": r["kind"], "username": r["username"], "channel_id": r["channel_id"],
                 "channel": r["channel"],
                 "until": r["until"].isoformat() if r["until"] else None, "reason": r["reason"]} for r in rows]

    @staticmethod
    def describe(sanction_id: int, kind: str, row: ChannelMeta | None, until: datetime | None,
                 reason: str) -> dict[str, Any]:
        return {"id": sanction_id, "kind": kind, "channel": row.name if row else None,
                "until": until.isoformat() if until else None, "reason": reason}

    async def _changed(self, user_id: int) -> None:
        if self.cache is not None:
            await self.cache.invalidate(tags=[f"sanctions:{user_id}", "sanctions:any"])

    async def _tell(self, user_id: int, data: dict[str, Any]) -> None:
        if self.publish is not None:
            await self.publish(user_id, data)
