"""Message history: keyset pages by (channel_id, offset), never OFFSET.

`offset` grows by one per message in a channel, so "after N" and "before N" are single index
range scans on `uq_messages_channel_id_offset`, stable while new messages arrive. Pages that reach
below the oldest live message continue in `messages_archive` (same key, same index shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import messages, messages_archive

MAX_PAGE = 200
_COLUMNS = ("id", "channel_id", "offset", "author_id", "body", "data", "reply_to_id", "nonce",
            "created_at", "edited_at", "deleted_at", "revision")


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    channel_id: int
    offset: int
    author_id: int | None
    body: str | None
    data: Any
    reply_to_id: int | None
    nonce: str | None
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None
    revision: int

    @classmethod
    def from_row(cls, row: Any) -> StoredMessage:
        return cls(**{name: row[name] for name in _COLUMNS})


def _select(table: sa.Table) -> sa.Select[Any]:
    return sa.select(*(table.c[name] for name in _COLUMNS))


def history_after_query(
    channel_id: int, after: int, limit: int, table: sa.Table = messages
) -> sa.Select[Any]:
    """Oldest first, strictly after `after`: recovery (`since`) and forward paging."""
    return (
        _select(table)
        .where(table.c.channel_id == channel_id, table.c.offset > after)
        .order_by(table.c.offset.asc())
        .limit(limit)
    )


def history_before_query(
    channel_id: int, before: int | None, limit: int, table: sa.Table = messages
) -> sa.Select[Any]:
    """Newest first, strictly before `before` (None: from the newest): scroll-back."""
    query = _select(table).where(table.c.channel_id == channel_id)
    if before is not None:
        query = query.where(table.c.offset < before)
    return query.order_by(table.c.offset.desc()).limit(limit)


async def history_after(db: Database, channel_id: int, after: int, limit: int) -> list[StoredMessage]:
    limit = max(1, min(limit, MAX_PAGE))
    archived = await db.fetch_all(
        "messages.history_after_archive", history_after_query(channel_id, after, limit, messages_archive)
    )
    rows = [StoredMessage.from_row(r) for r in archived]
    if len(rows) < limit:
        live = await db.fetch_all(
            "messages.history_after", history_after_query(channel_id, after, limit - len(rows))
        )
        rows.extend(StoredMessage.from_row(r) for r in live)
    return rows


async def history_before(
    db: Database, channel_id: int, before: int | None, limit: int
) -> list[StoredMessage]:
    """Newest-first page; continues into the archive when the live table runs out."""
    limit = max(1, min(limit, MAX_PAGE))
    live = await db.fetch_all("messages.history_before", history_before_query(channel_id, before, limit))
    rows = [StoredMessage.from_row(r) for r in live]
    if len(rows) < limit:
        floor = rows[-1].offset if rows else before
        archived = await db.fetch_all(
            "messages.history_before_archive",
            history_before_query(channel_id, floor, limit - len(rows), messages_archive),
        )
        rows.extend(StoredMessage.from_row(r) for r in archived)
    return rows
