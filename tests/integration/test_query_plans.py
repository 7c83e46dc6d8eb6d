"""With realistic volumes in PostgreSQL, the hot queries use their indexes (EXPLAIN says so).

The statements EXPLAINed are built by the same functions the product calls, so a query change
that stops using its index fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from server.db.queries import messages, notifications, sessions
from tests.conftest import fresh_postgres_url
from tests.support.services import PostgresServer

pytestmark = pytest.mark.slow

SEED = """
INSERT INTO users (username, email, role, status, xp, level, created_at, updated_at)
SELECT 'user' || g, 'user' || g || '@example.com', 'member', 'active', 0, 1, now(), now()
FROM generate_series(1, 1000) g;
INSERT INTO channels (name, kind, last_offset, created_at)
SELECT 'room:r' || g, 'room', 1000, now() FROM generate_series(1, 100) g;
INSERT INTO messages (channel_id, "offset", author_id, body, data, created_at)
SELECT 1 + (g % 100), 1 + (g / 100), 1 + (g % 1000), 'message ' || g, '{"k": 1}'::jsonb,
       now() - (g || ' seconds')::interval
FROM generate_series(0, 99999) g;
INSERT INTO notifications (user_id, kind, data, created_at, read_at)
SELECT 1 + (g % 1000), 'mention', '{}'::jsonb, now(),
       CASE WHEN g % 10 = 0 THEN NULL ELSE now() END
FROM generate_series(1, 10000) g;
INSERT INTO sessions (id, user_id, created_at, last_active_at, expires_at)
SELECT md5('s' || g), 1 + (g % 1000), now(), now(), now() + interval '30 days'
FROM generate_series(1, 10000) g;
INSERT INTO refresh_tokens (session_id, token_hash, created_at, expires_at)
SELECT md5('s' || g), encode(sha256(('t' || g)::bytea), 'hex'), now(), now() + interval '30 days'
FROM generate_series(1, 10000) g;
ANALYZE;
"""


@pytest.fixture(scope="module")
def loaded_database(postgres_service: PostgresServer) -> Iterator[str]:
    url = fresh_postgres_url(postgres_service)
    postgres_service.psql(SEED, database=url.rsplit("/", 1)[1])
    yield url


def compiled(query: sa.Select[Any]) -> str:
    return str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


async def explain(url: str, query: sa.Select[Any]) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(url)
    try:
        raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {compiled(query)}")
    finally:
        await connection.close()
    return list(plan_nodes(json.loads(raw)[0]["Plan"]))


def index_used(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Index Name"] for n in nodes if "Index Name" in n}


def seq_scanned(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}


@pytest.mark.parametrize(
    ("name", "query", "index", "table"),
    [
        ("history page (scroll back)", messages.history_before_query(42, 500, 50),
         "uq_messages_channel_id_offset", "messages"),
        ("history page (newest)", messages.history_before_query(42, None, 50),
         "uq_messages_channel_id_offset", "messages"),
        ("recovery since offset", messages.history_after_query(42, 900, 100),
         "uq_messages_channel_id_offset", "messages"),
        ("unread count", notifications.unread_count_query(7), "ix_notifications_unread", "notifications"),
        ("notification list", notifications.list_query(7, None, 20),
         "ix_notifications_user_id_id", "notifications"),
        ("session lookup by refresh token", sessions.refresh_lookup_query("ab" * 32),
         "uq_refresh_tokens_token_hash", "refresh_tokens"),
        ("sessions of a user", sessions.for_user_query(7), "ix_sessions_user_id_created_at", "sessions"),
    ],
)
async def test_hot_query_uses_index(
    loaded_database: str, name: str, query: sa.Select[Any], index: str, table: str
) -> None:
    nodes = await explain(loaded_database, query)
    assert index in index_used(nodes), f"{name}: plan {[n['Node Type'] for n in nodes]}"
    assert table not in seq_scanned(nodes), f"{name} scans {table} sequentially"


async def test_loaded_volumes(loaded_database: str) -> None:
    connection = await asyncpg.connect(loaded_database)
    try:
        assert await connection.fetchval("SELECT count(*) FROM messages") == 100_000
        assert await connection.fetchval("SELECT count(*) FROM notifications") == 10_000
    finally:
        await connection.close()
