"""Notification queries: unread counts from the partial index, lists by keyset on id."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import notifications


def unread_count_query(user_id: int) -> sa.Select[Any]:
    # ix_notifications_unread indexes only unread rows: the count never reads read ones.
    return (
        sa.select(sa.func.count())
        .select_from(notifications)
        .where(notifications.c.user_id == user_id, notifications.c.read_at.is_(None))
    )


def list_query(user_id: int, before_id: int | None, limit: int) -> sa.Select[Any]:
    query = sa.select(notifications).where(notifications.c.user_id == user_id)
    if before_id is not None:
        query = query.where(notifications.c.id < before_id)
    return query.order_by(notifications.c.id.desc()).limit(limit)


async def unread_count(db: Database, user_id: int) -> int:
    return int(await db.fetch_val("notifications.unread_count", unread_count_query(user_id)) or 0)
