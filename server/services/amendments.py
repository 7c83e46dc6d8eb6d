"""Edits, deletes and reactions: events on a channel that change an earlier message.

Why events: a client that was away recovers with `since` and receives exactly what it missed, in
order; if an edit only rewrote the stored row, a reconnecting client would keep the old text. So
each change is stored as a message of its own (its own offset; `data.type` is `edit`, `delete` or
`reaction`, `data.target` the changed message's offset) *and* applied to the target row in the
same transaction, with the target's `revision` set to the event's offset. History read from the
database therefore shows each message as it is now, with `rev`: a client applies an event to a
message only when the event's offset is above the message's `rev`, so replaying history and
recovery in any overlap gives the same screen as never having left.

Events are stored one at a time under the channel row's lock (the same lock that orders plain
messages), so offsets, the target's state and the event agree even across replicas. Plain
messages can never look like events: their data is validated to `text`/`reply_to`/`cid` only.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import emoji as emoji_lib
import sqlalchemy as sa

from realtime import errors
from realtime.connection import ConnUser
from realtime.errors import ReplyError
from realtime.hooks import PendingMessage
from server.auth import rbac
from server.db.database import Database
from server.db.queries.message_batch import ChannelGone
from server.db.queries.messages import StoredMessage
from server.db.tables import channels, message_edits, messages, reactions
from server.services.channels import ChannelMeta, Channels
from server.services.chat_data import clean_text

EVENT_TYPES = frozenset({"edit", "delete", "reaction"})
# Offered first by the PWA's picker; any other single emoji is accepted too.
QUICK_REACTIONS = ("👍", "❤️", "😂", "😮", "😢", "🎉", "🔥", "⛏️")
MAX_REACTORS_SHOWN = 25  # user ids per emoji in a history frame (the REST list has them all)


def is_event(data: Any) -> bool:
    return isinstance(data, dict) and data.get("type") in EVENT_TYPES


def _field_error(field: str, code: str, message: str) -> ReplyError:
    return ReplyError(errors.INVALID_DATA, f"{field}: {message}",
                      details=({"field": field, "code": code, "message": message},))


def clean_emoji(value: Any) -> str:
    """One emoji grapheme (skin tones, ZWJ families and flags included), nothing else."""
    if not isinstance(value, str) or not value or len(value) > 32:
        raise _field_error("emoji", "invalid_emoji", "must be one emoji")
    if value not in QUICK_REACTIONS and not emoji_lib.is_emoji(value):
        raise _field_error("emoji", "invalid_emoji", "must be one emoji")
    return value


def _not_found() -> ReplyError:
    return ReplyError(errors.MESSAGE_NOT_FOUND, "no such message in this channel")


class Amendments:
    def __init__(self, db: Database, channels_: Channels) -> None:
        self.db = db
        self.channels = channels_

    # --- before queueing: is this change allowed? --------------------------------------------
    async def event(self, user: ConnUser, row: ChannelMeta, op: str, target: int, data: Any,
                    emoji: str | None) -> dict[str, Any]:
        message = await self._target(row.id, target)
        if message is None or is_event(message["data"]) or message["deleted_at"] is not None:
            raise _not_found()
        if op == "edit":
            if message["author_id"] != user.user_id:
                raise ReplyError(errors.FORBIDDEN, "only its author edits a message")
            if not isinstance(data, dict) or set(data) - {"text"}:
                raise _field_error("data", "invalid_type", 'an edit is {"text": "..."}')
            return {"type": "edit", "target": target, "text": clean_text(data.get("text"))}
        if op == "delete":
            if message["author_id"] != user.user_id and not await self.moderates(user, row):
                raise ReplyError(errors.FORBIDDEN, "only its author or a moderator deletes a message")
            return {"type": "delete", "target": target}
        return {"type": "reaction", "target": target, "emoji": clean_emoji(emoji), "on": op == "react"}

    async def moderates(self, user: ConnUser, row: ChannelMeta) -> bool:
        """Site moderators and admins everywhere; a room's owner and moderators in it."""
        if rbac.allowed(user.role, "moderation.messages.delete"):
            return True
        if row.kind not in ("room", "private_room"):
            return False
        membership = await self.channels.membership(row, user.user_id)
        return membership is not None and rbac.channel_allowed(membership[0], "channel.moderate")

    async def _target(self, channel_id: int, offset: int) -> Any:
        return await self.db.fetch_one("messages.target", sa.select(
            messages.c.id, messages.c.author_id, messages.c.data, messages.c.deleted_at).where(
            messages.c.channel_id == channel_id, messages.c.offset == offset))

    # --- in the group commit: store the event and apply it, atomically -------------------------
    async def store(self, row: ChannelMeta, pending: PendingMessage, now: datetime) -> tuple[int, dict[str, Any]]:
        """The event's offset and its final data (a reaction carries the emoji's new count)."""
        event = dict(pending.data)
        actor = pending.user.user_id if pending.user is not None else None
        async with self.db.transaction():
            offset = await self.db.fetch_val("messages.event_offset", channels.update().where(
                channels.c.id == row.id).values(last_offset=channels.c.last_offset + 1).returning(
                channels.c.last_offset))
            if offset is None:
                raise ChannelGone(row.name)
            target = await self._target(row.id, event["target"])
            if target is None or is_event(target["data"]) or target["deleted_at"] is not None:
                raise _not_found()  # deleted meanwhile: the transaction (and the offset) rolls back
            changes: dict[str, Any] = {"revision": offset}
            if event["type"] == "edit":
                await self._keep(target, actor, "edit", now)
                changes.update(data={**target["data"], "text": event["text"]}, body=event["text"], edited_at=now)
            elif event["type"] == "delete":
                await self._keep(target, actor, "delete", now)
                changes.update(data=None, body=None, deleted_at=now)
            else:
                event["count"] = await self._react(target["id"], actor, event["emoji"], event["on"], now)
            await self.db.execute("messages.amend", messages.update().where(
                messages.c.id == target["id"]).values(**changes))
            await self.db.execute("messages.insert_event", messages.insert().values(
                channel_id=row.id, offset=offset, author_id=actor, body=None, data=event, created_at=now))
        return int(offset), event

    async def _keep(self, target: Any, editor: int | None, action: str, now: datetime) -> None:
        await self.db.execute("messages.keep_edit", message_edits.insert().values(
            message_id=target["id"], editor_id=editor, action=action, data=target["data"], created_at=now))

    async def _react(self, message_id: int, user_id: int | None, emoji: str, on: bool, now: datetime) -> int:
        mine = sa.and_(reactions.c.message_id == message_id, reactions.c.user_id == user_id,
                       reactions.c.emoji == emoji)
        exists = await self.db.fetch_val("reactions.exists", sa.select(reactions.c.message_id).where(mine))
        if on and exists is None:
            await self.db.execute("reactions.add", reactions.insert().values(
                message_id=message_id, user_id=user_id, emoji=emoji, created_at=now))
        elif not on and exists is not None:
            await self.db.execute("reactions.remove", reactions.delete().where(mine))
        count = await self.db.fetch_val("reactions.count", sa.select(sa.func.count()).select_from(reactions).where(
            reactions.c.message_id == message_id, reactions.c.emoji == emoji))
        return int(count or 0)

    # --- reading back -------------------------------------------------------------------------
    async def states(self, stored: list[StoredMessage]) -> dict[int, dict[str, Any]]:
        """What events changed, per message id of a history page: `edited_at`, `deleted`,
        `reactions` ([{emoji, count, users}], first reaction first) and `rev`."""
        states: dict[int, dict[str, Any]] = {}
        reacted: list[int] = []
        for m in stored:
            state: dict[str, Any] = {}
            if m.revision:
                state["rev"] = m.revision
                reacted.append(m.id)
            if m.edited_at is not None:
                state["edited_at"] = m.edited_at.isoformat()
            if m.deleted_at is not None:
                state["deleted"] = True
            if state:
                states[m.id] = state
        if reacted:
            rows = await self.db.fetch_all("reactions.for_page", sa.select(
                reactions.c.message_id, reactions.c.emoji, reactions.c.user_id).where(
                reactions.c.message_id.in_(reacted)).order_by(reactions.c.created_at, reactions.c.user_id))
            by_message: dict[int, dict[str, list[int]]] = defaultdict(dict)
            for r in rows:
                by_message[r["message_id"]].setdefault(r["emoji"], []).append(r["user_id"])
            for message_id, emojis in by_message.items():
                states[message_id]["reactions"] = [
                    {"emoji": e, "count": len(reactors), "users": reactors[:MAX_REACTORS_SHOWN]}
                    for e, reactors in emojis.items()]
        return states
