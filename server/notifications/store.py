"""Notification rows: insert, keyset list (newest first), unread count, mark read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.queries import notifications as queries
from server.db.tables import channel_members, notifications
from server.db.types import utcnow


def item(row: Any) -> dict[str, Any]:
    """The public shape of a notification (API lists and live pushes)."""
    data = row["data"] or {}
    created: datetime = row["created_at"]
    return {
        "id": row["id"], "kind": row["kind"], "channel": row["channel"], "offset": row["message_offset"],
        "actor": data.get("actor"), "title": data.get("title", ""), "body": data.get("body", ""),
        "url": data.get("url", "/notifications"), "created_at": created.isoformat(),
        "read": row["read_at"] is not None,
    }


async def insert(db: Database, *, user_id: int, kind: str, channel: str | None, offset: int | None,
                 actor_id: int | None,
                 data: dict[str, Any]) -> dict[str, Any]:
    row = await db.fetch_one("notifications.insert", notifications.insert().values(
        user_id=user_id, kind=kind, channel=channel, message_offset=offset, actor_id=actor_id, data=data,
        created_at=utcnow()).returning(*notifications.c))
    return item(row)


async def page(db: Database, user_id: int, before: int | None, limit: int) -> list[dict[str, Any]]:
    rows = await db.fetch_all("notifications.list", queries.list_query(user_id, before, limit))
    return [item(r) for r in rows]


async def exists(db: Database, user_id: int, notification_id: int) -> bool:
    found = await db.fetch_val("notifications.by_id", sa.select(notifications.c.id).where(
        notifications.c.id == notification_id, notifications.c.user_id == user_id))
    return found is not None


async def unread(db: Database, user_id: int) -> int:
    return await queries.unread_count(db, user_id)


async def mark_read(db: Database, user_id: int, ids: list[int] | None) -> list[int]:
    """Mark the given notifications (None: all) read; returns the ids that changed."""
    query = notifications.update().where(notifications.c.user_id == user_id, notifications.c.read_at.is_(None))
    if ids is not None:
        if not ids:
            return []
        query = query.where(notifications.c.id.in_(ids))
    rows = await db.fetch_all("notifications.mark_read", query.values(read_at=utcnow()).returning(notifications.c.id))
    return sorted(r["id"] for r in rows)


async def mark_channel_read(db: Database, user_id: int, channel: str, upto: int) -> list[int]:
    """Mark read the user's notifications of messages in `channel` up to offset `upto`."""
    rows = await db.fetch_all("notifications.mark_channel_read", notifications.update().where(
        notifications.c.user_id == user_id, notifications.c.read_at.is_(None), notifications.c.channel == channel,
        notifications.c.message_offset <= upto).values(read_at=utcnow()).returning(notifications.c.id))
    return sorted(r["id"] for r in rows)


async def settle_if_read(db: Database, notification_id: int, channel_id: int, user_id: int, offset: int) -> bool:
    """Mark a new notification read when its reader's marker already covers the message.

    Run after the insert: a `read` that moved the marker before the insert committed did not see
    the row, so this catches it; one that comes later marks it read itself. Either way a message
    read live never leaves a notification unread (and the badge never rises for it).
    """
    covered = sa.select(channel_members.c.user_id).where(
        channel_members.c.channel_id == channel_id, channel_members.c.user_id == user_id,
        channel_members.c.last_read_offset >= offset)
    rows = await db.fetch_all("notifications.settle_if_read", notifications.update().where(
        notifications.c.id == notification_id, notifications.c.read_at.is_(None), sa.exists(covered),
    ).values(read_at=utcnow()).returning(notifications.c.id))
    return bool(rows)


async def author_at(db: Database, channel_id: int, offset: int) -> int | None:
    from server.db.tables import messages

    return await db.fetch_val("messages.author_at", sa.select(messages.c.author_id).where(
        messages.c.channel_id == channel_id, messages.c.offset == offset))
