"""Read markers: how far a user has read a room or DM, and what that reading settles.

Moving the marker (the websocket `read` op, or `POST /api/channels/{channel}/read`) also marks
read the user's notifications of that channel up to the marker: reading a conversation is reading
its mentions, replies and DMs, on every device. Every device of the user hears the new state on
`user:<id>` (`{"type": "read", "channel", "offset", "channel_unread", "unread"}`), so unread counts
and the notification badge agree with the server after any sequence of reads anywhere.

Markers only move forward and never past the channel's last offset. A public room the user has not
joined has no marker; reading it still settles its notifications (a mention seen is a mention read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import channel_members
from server.notifications import store
from server.services.channels import ChannelMeta, Channels


@dataclass(frozen=True, slots=True)
class ReadState:
    channel: str
    offset: int  # the marker now stored (for a non-member: the offset read)
    channel_unread: int
    unread: int  # the user's unread notifications

    def fields(self) -> dict[str, Any]:
        return {"offset": self.offset, "channel_unread": self.channel_unread, "unread": self.unread}


class ReadMarkers:
    def __init__(self, db: Database, channels: Channels, notifications: Any) -> None:
        self.db = db
        self.channels = channels
        self.notifications = notifications

    async def mark(self, user_id: int, channel: ChannelMeta, offset: int) -> ReadState:
        """Move the marker to `offset` (capped at the last message), settle notifications, tell
        the user's devices when anything changed."""
        last = await self.channels.last_offset(channel.id)
        target = min(offset, last)
        mine = (channel_members.c.channel_id == channel.id) & (channel_members.c.user_id == user_id)
        moved = await self.db.fetch_all("channels.mark_read", channel_members.update().where(
            mine, channel_members.c.last_read_offset < target).values(last_read_offset=target).returning(
            channel_members.c.last_read_offset))
        marker = moved[0]["last_read_offset"] if moved else await self.db.fetch_val(
            "channels.read_marker", sa.select(channel_members.c.last_read_offset).where(mine))
        member = marker is not None
        upto = int(marker) if member else target
        settled = await store.mark_channel_read(self.db, user_id, channel.name, upto)
        unread = await store.unread(self.db, user_id)
        state = ReadState(channel.name, upto, max(0, last - upto) if member else 0, unread)
        if settled or moved:
            await self.notifications.publish(user_id, {"type": "read", "channel": channel.name, **state.fields()})
        return state

