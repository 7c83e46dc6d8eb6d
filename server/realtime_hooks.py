"""The server's side of the realtime contract: tokens, channel permissions and persistence.

Permissions per namespace:
- `room:<name>`: public rooms: any signed-in user may subscribe, read history and presence, and
  publish unless muted; private rooms: members only.
- `dm:<a>:<b>`: only users a and b.
- `user:<id>`: only that user subscribes; only the server publishes.
- `bot:<name>`: anyone signed in subscribes; only that bot (or an admin) publishes.
- `status:<name>`: anyone, signed in or not, subscribes (a guest connection may follow these and
  nothing else); only the server publishes (the game servers' live status).
Chat channels (`room:`, `dm:`) are persisted: the database assigns the offset inside the insert
transaction (one per batch: the node group-commits) and the node publishes after the commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from realtime import errors
from realtime.connection import ConnUser
from realtime.errors import ReplyError
from realtime.history.base import FrameParts
from realtime.hooks import PendingMessage, Persisted
from server.auth.principal import Principal
from server.auth.service import AuthService
from server.auth.tokens import InvalidToken
from server.db.database import Database
from server.db.errors import IntegrityViolation
from server.db.queries import messages as message_queries
from server.db.queries.message_batch import ChannelGone, NewMessage, store_batch
from server.db.tables import ranks, users
from server.db.types import utcnow
from server.notifications.events import MessageStored
from server.services.amendments import Amendments, is_event
from server.services.channels import PERSISTED_NAMESPACES, ChannelMeta, Channels, dm_members
from server.services.chat_data import validate_chat_data
from server.services.live import LiveStreams
from server.services.people import People
from server.services.read_markers import ReadMarkers
from server.services.relations import DM_BLOCKED, DM_NOT_ALLOWED, Relations
from server.services.sanctions import Sanctions

DM_REFUSALS = {DM_BLOCKED: "you cannot message this member",
               DM_NOT_ALLOWED: "this member accepts direct messages from friends only"}


def conn_user(principal: Principal, expires_at: float | None = None) -> ConnUser:
    return ConnUser(user_id=principal.user_id, username=principal.username, role=principal.role,
                    kind=principal.kind, session_id=principal.session_id, scopes=principal.scopes,
                    expires_at=expires_at, rank=principal.rank, game_server_id=principal.game_server_id)


class ServerHooks:
    def __init__(self, db: Database, auth: AuthService, timings: Any = None) -> None:
        self.db = db
        self.auth = auth
        self.timings = timings
        self.channels = Channels(db)
        # Told about every newly stored message after its commit (notifications); must not block.
        # Who hears of each newly stored chat message (notifications, the game bridge's status) and
        # of a user's last connection on this replica closing: areas add themselves at build time.
        self.stored_observers: list[Callable[[MessageStored], None]] = []
        self.offline_observers: list[Callable[[ConnUser], None]] = []
        self.read_markers: ReadMarkers | None = None  # set once notifications exist (Resources.build)
        self.relations: Relations | None = None  # set by Resources.build: blocks and DM settings
        self.people: People | None = None  # set by Resources.build: friends told of online changes
        self.amendments = Amendments(db, self.channels)
        self.sanctions: Sanctions | None = None  # set by Resources.build: mutes and bans
        # Set by Resources.build: raise ReplyError(rate_limited) inside a room's slow-mode interval.
        self.slow_mode: Callable[[ChannelMeta, int], Awaitable[None]] | None = None
        # Set by Resources.build: drop a channel's cached history pages (an event changed one).
        self.forget_history: Callable[[str], Awaitable[None]] | None = None
        self.live: LiveStreams | None = None  # set by Resources.build: who reads which `live:` stream

    def attach_cache(self, cache: Any) -> None:
        """Channel metadata and memberships (checked on every subscribe and publish) come from it."""
        self.channels.attach_cache(cache)

    async def authenticate(self, token: str) -> ConnUser:
        try:
            principal = await self.auth.principal_from_token(token)
        except InvalidToken:
            raise ReplyError(errors.INVALID_TOKEN, "the token is invalid or expired") from None
        expires_at = float(principal.expires_at) if principal.expires_at is not None else None
        return conn_user(principal, expires_at)

    async def session_alive(self, session_id: str) -> bool:
        session = await self.auth.sessions.get(session_id)
        return session is not None and session["revoked_at"] is None

    def public(self, channel: str) -> bool:
        return channel.startswith("status:")

    def persisted(self, channel: str) -> bool:
        return channel.startswith(PERSISTED_NAMESPACES)

    async def validate(self, channel: str, data: Any, user: ConnUser | None) -> Any:
        async def last_offset() -> int:
            return (await self.position(channel))[0]

        return await validate_chat_data(data, last_offset, relaying=user is not None and user.kind == "bot")

    async def mark_read(self, user: ConnUser, channel: str, offset: int) -> dict[str, Any]:
        assert self.read_markers is not None  # set by Resources.build
        state = await self.read_markers.mark(user.user_id, await self._channel(channel), offset)
        return state.fields()

    async def _channel(self, channel: str) -> ChannelMeta:
        row = await self.channels.meta(channel)
        if row is None:
            members = dm_members(channel)
            if members is not None:
                try:
                    return await self.channels.ensure_dm(*members)
                except IntegrityViolation:
                    raise ReplyError(errors.FORBIDDEN, "no such user") from None
            raise ReplyError(errors.FORBIDDEN, "no such channel")
        return row

    async def authorize(self, user: ConnUser, channel: str, action: str) -> None:
        """`action`: subscribe, history, presence, publish, or amend (edit, delete, react: as
        publish, without slow mode)."""
        namespace, _, name = channel.partition(":")
        if namespace == "user":
            if action == "publish" or name != str(user.user_id):
                raise ReplyError(errors.FORBIDDEN, "personal channels are for their owner, published by the server")
            return
        if namespace == "status":
            if action not in ("subscribe", "history"):
                raise ReplyError(errors.FORBIDDEN, "status channels are published by the server")
            return
        if namespace == "live":
            if self.live is None:
                raise ReplyError(errors.FORBIDDEN, "no such stream")
            await self.live.authorize(user, name, action)
            return
        if namespace == "bot":
            if action == "publish" and not (user.kind == "bot" and user.username.lower() == name.lower()) \
                    and user.role != "admin":
                raise ReplyError(errors.FORBIDDEN, "only that bot publishes on its channel")
            return
        if namespace == "dm":
            members = dm_members(channel)
            if members is None or user.user_id not in members:
                raise ReplyError(errors.FORBIDDEN, "direct messages are for their two members")
            if action in ("publish", "amend") and self.sanctions is not None:
                await self.sanctions.check(user, None, action)  # site-wide mutes and bans
            if action == "publish" and self.relations is not None and user.kind == "user":
                other = members[0] if members[1] == user.user_id else members[1]
                refusal = await self.relations.dm_refusal(user.user_id, other)
                if refusal is not None:
                    raise ReplyError(errors.FORBIDDEN, DM_REFUSALS[refusal])
            return
        row = await self._channel(channel)
        if self.sanctions is not None:
            await self.sanctions.check(user, row.id, action)  # one cached list per user, nearly always empty
        writing = action in ("publish", "amend")
        if not row.private and not writing:
            return  # a public room: anyone signed in reads it; no membership lookup on every subscribe
        membership = await self.channels.membership(row, user.user_id)
        if row.private and membership is None and user.role != "admin":
            raise ReplyError(errors.FORBIDDEN, "this room is private")
        if writing and membership is not None and membership[1] is not None and membership[1] > utcnow():
            raise ReplyError(errors.FORBIDDEN, "you are muted in this room", temporary=True)
        if action == "publish" and row.slow_mode and self.slow_mode is not None and user.kind == "user" \
                and user.role not in ("admin", "moderator") \
                and not (membership is not None and membership[0] in ("owner", "moderator")):
            await self.slow_mode(row, user.user_id)

    def user_online(self, user: ConnUser) -> None:
        if self.people is not None and user.kind == "user":
            self.people.user_online(user.user_id)

    def user_offline(self, user: ConnUser) -> None:
        if self.people is not None and user.kind == "user":
            self.people.user_offline(user.user_id)
        for observer in self.offline_observers:
            observer(user)

    async def persist_many(self, batch: Sequence[PendingMessage]) -> list[Persisted | Exception]:
        """Stores the batch (group commit, `message_batch`); the database assigns offsets, and
        after the commit notifications hear about each new message. Edits, deletes and reactions
        (`services/amendments.py`) are stored one by one in queue order between runs of plain
        messages, so offsets keep the order publishers queued them in."""
        outcomes: list[Persisted | Exception | None] = [None] * len(batch)
        plain: list[tuple[int, ChannelMeta, PendingMessage]] = []
        for index, pending in enumerate(batch):
            try:
                row = await self._channel(pending.channel)
            except ReplyError as exc:
                outcomes[index] = exc
                continue
            if not is_event(pending.data):
                plain.append((index, row, pending))
                continue
            await self._store_plain(plain, outcomes)
            plain = []
            outcomes[index] = await self._store_event(row, pending)
        await self._store_plain(plain, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _store_plain(self, rows: list[tuple[int, ChannelMeta, PendingMessage]],
                           outcomes: list[Persisted | Exception | None]) -> None:
        if not rows:
            return
        with self.timings.time("realtime.persist") if self.timings else contextlib.nullcontext():
            stored = await store_batch(self.db, [_new_message(row, pending) for _, row, pending in rows])
        for (index, row, pending), result in zip(rows, stored, strict=True):
            if isinstance(result, ChannelGone):
                outcomes[index] = ReplyError(errors.FORBIDDEN, "no such channel")
                continue
            user = pending.user
            parts = FrameParts.message(pending.channel, pending.data, user.public() if user else None,
                                       pending.ts)
            outcomes[index] = Persisted(result.offset, row.epoch, parts, duplicate=result.duplicate)
            if not result.duplicate and self.stored_observers:
                event = MessageStored(
                    pending.channel, row.id, row.kind, result.offset, user.user_id if user else None,
                    user.username if user else None, user.kind if user else None, pending.data)
                for observer in self.stored_observers:
                    observer(event)

    async def _store_event(self, row: ChannelMeta, pending: PendingMessage) -> Persisted | Exception:
        now = datetime.fromtimestamp(pending.ts, UTC) if pending.ts else utcnow()
        try:
            offset, event = await self.amendments.store(row, pending, now)
        except ChannelGone:
            return ReplyError(errors.FORBIDDEN, "no such channel")
        except ReplyError as exc:
            return exc
        if self.forget_history is not None:  # cached closed pages show the old state
            await self.forget_history(pending.channel)
        user = pending.user
        parts = FrameParts.message(pending.channel, event, user.public() if user else None, pending.ts)
        return Persisted(offset, row.epoch, parts)

    async def amendment(self, user: ConnUser, channel: str, op: str, offset: int, data: Any,
                        emoji: str | None) -> Any:
        return await self.amendments.event(user, await self._channel(channel), op, offset, data, emoji)

    async def position(self, channel: str) -> tuple[int, str]:
        row = await self._channel(channel)
        return await self.channels.last_offset(row.id), row.epoch

    async def history(self, channel: str, after: int, limit: int) -> list[tuple[int, bytes]]:
        row = await self._channel(channel)
        stored: list[Any] = []
        while len(stored) < limit:  # pages are capped (MAX_PAGE): keep reading up to `limit`
            want = limit - len(stored)
            page = await message_queries.history_after(self.db, row.id, after, want)
            stored.extend(page)
            if len(page) < min(want, message_queries.MAX_PAGE):
                break
            after = page[-1].offset
        return await self.frames(channel, row.epoch, stored)

    async def frames(self, channel: str, epoch: str, stored: list[Any]) -> list[tuple[int, bytes]]:
        authors = {m.author_id for m in stored if m.author_id is not None}
        senders: dict[int, dict[str, Any]] = {}
        if authors:
            rows = await self.db.fetch_all("users.senders", sa.select(
                users.c.id, users.c.username, ranks.c.name, ranks.c.colour, ranks.c.badge).select_from(
                users.outerjoin(ranks, ranks.c.id == users.c.rank_id)).where(users.c.id.in_(authors)))
            senders = {r["id"]: {"id": r["id"], "username": r["username"]} if r["name"] is None else
                       {"id": r["id"], "username": r["username"],
                        "rank": {"name": r["name"], "colour": r["colour"], "badge": r["badge"]}} for r in rows}
        states = await self.amendments.states(stored)
        return [
            (m.offset, FrameParts.message(
                channel, None if m.deleted_at is not None else m.data,
                senders.get(m.author_id, {"id": m.author_id, "username": "deleted"}) if m.author_id else None,
                m.created_at.timestamp(), states.get(m.id)).build(m.offset, epoch))
            for m in stored
        ]


def _new_message(row: ChannelMeta, pending: PendingMessage) -> NewMessage:
    data = pending.data
    body = data.get("text") if isinstance(data, dict) and isinstance(data.get("text"), str) else None
    return NewMessage(
        channel_id=row.id, author_id=pending.user.user_id if pending.user else None, body=body, data=data,
        nonce=pending.nonce, created_at=datetime.fromtimestamp(pending.ts, UTC) if pending.ts else utcnow())


__all__ = ["ServerHooks", "conn_user"]
