"""Search messages in the channels a member may read, and members by name.

One interface, two engines chosen by the database: PostgreSQL full-text search (the generated
`messages.search` tsvector, a GIN index, `websearch_to_tsquery`, `ts_rank`, `ts_headline`) and
SQLite FTS5 (`bm25`, `highlight`), both from migration 0009. The permission check is part of the
query (public rooms, rooms and DMs the member belongs to, minus rooms they are banned from), so a
page is never filtered after its limit and never comes back short while matches remain.

Paging is keyset on (rank, id): the cursor carries the last result's rank and id. Highlights come
back as segments `[[text, matched], ...]`: the engines mark matches with control characters, which
messages can never contain (chat data refuses them), and clients render segments as text.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import sqlalchemy as sa

from server.db.database import Database
from server.db.types import UtcDateTime

START, STOP = "\x02", "\x03"
QUERY_MAX = 200


@dataclass(frozen=True, slots=True)
class Cursor:
    rank: float
    id: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(orjson.dumps([self.rank, self.id])).decode().rstrip("=")

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        """ValueError for anything that is not a cursor this server made."""
        try:
            rank, ident = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError):
            raise ValueError("not a search cursor") from None
        if not isinstance(rank, int | float) or isinstance(rank, bool) or not isinstance(ident, int) \
                or isinstance(ident, bool) or not 0 < ident < 2**62:
            raise ValueError("not a search cursor")
        return cls(float(rank), ident)


def segments(marked: str) -> list[list[Any]]:
    """`a \\x02b\\x03 c` -> [["a ", False], ["b", True], [" c", False]]."""
    out: list[list[Any]] = []
    matched = False
    text = ""
    for char in marked:
        if char in (START, STOP):
            if text:
                out.append([text, matched])
            text, matched = "", char == START
        else:
            text += char
    if text:
        out.append([text, matched])
    return out


@dataclass(frozen=True, slots=True)
class Hit:
    id: int
    channel: str
    offset: int
    author_id: int | None
    created_at: Any
    rank: float
    highlight: list[list[Any]]


# Channels the member may read, in SQL: the same rules as the realtime layer's `authorize`.
_READABLE = """
    SELECT c.id FROM channels c
    WHERE c.archived_at IS NULL
      AND (c.kind = 'room' OR c.id IN (SELECT cm.channel_id FROM channel_members cm WHERE cm.user_id = :me))
      AND c.id NOT IN (SELECT s.channel_id FROM sanctions s WHERE s.user_id = :me AND s.kind = 'ban'
                       AND s.channel_id IS NOT NULL AND s.lifted_at IS NULL
                       AND (s.until IS NULL OR s.until > :now))
"""


class SearchEngine(Protocol):
    async def messages(self, me: int, query: str, channel_id: int | None, after: Cursor | None,
                       limit: int, now: Any) -> list[Hit]: ...


class PostgresSearch:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def messages(self, me: int, query: str, channel_id: int | None, after: Cursor | None,
                       limit: int, now: Any) -> list[Hit]:
        # The readable channels become one array (an InitPlan) and `+ 0` keeps the planner off the
        # (channel_id, offset) index: otherwise it ANDs that index's bitmap (every message of every
        # public room) with the text index's, or loops the text index once per channel; measured
        # at 1,000,000 messages, 91 ms instead of 150-390 ms for the commonest word.
        where = ["m.search @@ query", f"(m.channel_id + 0) = ANY(ARRAY({_READABLE}))"]
        values: dict[str, Any] = {"me": me, "q": query, "now": now, "limit": limit,
                                  # whole messages (at most 4,000 characters), as SQLite's highlight() gives
                                  "options": f"StartSel={START}, StopSel={STOP}, HighlightAll=true"}
        if channel_id is not None:
            where.append("m.channel_id = :channel")
            values["channel"] = channel_id
        ranked = ("SELECT m.id, m.channel_id, m.\"offset\", m.author_id, m.created_at, m.body, "
                  "ts_rank(m.search, query)::float8 AS rank, query "
                  "FROM messages m, websearch_to_tsquery('english', :q) AS query WHERE " + " AND ".join(where))
        page = f"SELECT * FROM ({ranked}) r"
        if after is not None:
            page += " WHERE (r.rank, r.id) < (:rank, :id)"
            values.update(rank=after.rank, id=after.id)
        page += " ORDER BY r.rank DESC, r.id DESC LIMIT :limit"
        statement = (f"SELECT p.id, c.name AS channel, p.\"offset\", p.author_id, p.created_at, p.rank, "
                     f"ts_headline('english', p.body, p.query, :options) AS marked "
                     f"FROM ({page}) p JOIN channels c ON c.id = p.channel_id ORDER BY p.rank DESC, p.id DESC")
        rows = await self.db.fetch_all("search.messages", _typed(statement, values))
        return [_hit(r) for r in rows]


class SqliteSearch:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def messages(self, me: int, query: str, channel_id: int | None, after: Cursor | None,
                       limit: int, now: Any) -> list[Hit]:
        match = fts5_query(query)
        if not match:
            return []
        # bm25 is lower for better matches: ranks are its negation, so both engines sort descending
        where = ["messages_fts MATCH :q", f"m.channel_id IN ({_READABLE})"]
        values: dict[str, Any] = {"me": me, "q": match, "now": now, "limit": limit}
        if channel_id is not None:
            where.append("m.channel_id = :channel")
            values["channel"] = channel_id
        if after is not None:
            where.append("(-bm25(messages_fts) < :rank OR (-bm25(messages_fts) = :rank AND m.id < :id))")
            values.update(rank=after.rank, id=after.id)
        statement = ("SELECT m.id, c.name AS channel, m.\"offset\", m.author_id, m.created_at, "
                     "-bm25(messages_fts) AS rank, highlight(messages_fts, 0, char(2), char(3)) AS marked "
                     "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                     "JOIN channels c ON c.id = m.channel_id WHERE " + " AND ".join(where) +
                     " ORDER BY rank DESC, m.id DESC LIMIT :limit")
        rows = await self.db.fetch_all("search.messages", _typed(statement, values))
        return [_hit(r) for r in rows]


def fts5_query(query: str) -> str:
    """The words of a search as an FTS5 expression: every word must match, each quoted so FTS5's
    own syntax never applies (PostgreSQL's `websearch_to_tsquery` also ANDs plain words)."""
    words = [w for w in "".join(ch if ch.isalnum() or ch in "'_" else " " for ch in query).split() if w]
    terms = ['"' + w.replace('"', '""') + '"' for w in words[:16]]
    return " ".join(terms)


def _typed(statement: str, values: dict[str, Any]) -> Any:
    """Raw SQL with its parameters bound and its result columns typed (UTC datetimes on SQLite)."""
    now = values.pop("now")
    return sa.text(statement).bindparams(sa.bindparam("now", now, type_=UtcDateTime()), **values).columns(
        sa.column("id", sa.BigInteger()), sa.column("channel", sa.String()), sa.column("offset", sa.BigInteger()),
        sa.column("author_id", sa.BigInteger()), sa.column("created_at", UtcDateTime()),
        sa.column("rank", sa.Float()), sa.column("marked", sa.Text()))


def _hit(row: Any) -> Hit:
    return Hit(row["id"], row["channel"], row["offset"], row["author_id"], row["created_at"], float(row["rank"]),
               segments(row["marked"] or ""))


def create_search(db: Database) -> SearchEngine:
    return PostgresSearch(db) if db.url.is_postgres else SqliteSearch(db)
