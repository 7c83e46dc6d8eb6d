"""With realistic volumes in PostgreSQL, the forum's, groups' and events' list queries use their
indexes (EXPLAIN says so), never a sequential scan of their big table.

The statements EXPLAINed are built by the functions the services run (server/services/forum.py,
server/services/groups.py), so a query change that stops using its index fails here. The feed's
are in tests/integration/test_feed.py, the chat's in tests/integration/test_query_plans.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from server.services import forum, groups
from tests.conftest import fresh_postgres_url
from tests.integration.test_query_plans import compiled, index_used, plan_nodes, seq_scanned
from tests.support.services import PostgresServer

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)

# 10 categories of 5,000 threads (1 in 1,000 pinned, 1 in 50 deleted), 100,000 replies; 5,000
# groups (1 in 4 private) each with its room, 50,000 memberships; 50,000 events from half a year
# ago to half a year ahead (1 in 5 of a group), the past ones reminded.
SEED = """
INSERT INTO users (username, email, role, status, xp, level, created_at, updated_at)
SELECT 'user' || g, 'user' || g || '@example.com', 'member', 'active', 0, 1, now(), now()
FROM generate_series(1, 2000) g;
INSERT INTO forum_categories (name, slug, position, created_at)
SELECT 'Category ' || g, 'category-' || g, g, now() FROM generate_series(1, 10) g;
INSERT INTO forum_threads (category_id, author_id, title, body, html, score, pinned, deleted, created_at,
                           last_activity_at)
SELECT 1 + (g % 10), 1 + (g % 2000), 'thread ' || g, 'body', '<p>body</p>', (g * 7919) % 200 - 50,
       g % 1000 = 0, g % 50 = 0, now() - (g || ' minutes')::interval,
       now() - (((g * 7919) % 100000) || ' seconds')::interval
FROM generate_series(1, 50000) g;
INSERT INTO forum_replies (thread_id, author_id, body, html, created_at)
SELECT 1 + (g % 50000), 1 + (g % 2000), 'reply ' || g, '<p>reply</p>', now() FROM generate_series(1, 100000) g;
INSERT INTO channels (name, kind, title, last_offset, created_at)
SELECT 'room:group-g' || g, CASE WHEN g % 4 = 0 THEN 'private_room' ELSE 'room' END, 'Group ' || g, 0, now()
FROM generate_series(1, 5000) g;
INSERT INTO groups (name, slug, visibility, room_channel_id, members, created_at)
SELECT 'Group ' || g, 'group-' || g, CASE WHEN g % 4 = 0 THEN 'private' ELSE 'public' END,
       (SELECT id FROM channels WHERE name = 'room:group-g' || g), 10, now()
FROM generate_series(1, 5000) g;
INSERT INTO group_members (group_id, user_id, role, created_at)
SELECT 1 + (g % 5000), 1 + (g / 5000) + 10 * (g % 200), CASE WHEN g < 5000 THEN 'owner' ELSE 'member' END, now()
FROM generate_series(0, 49999) g;
INSERT INTO events (title, starts_at, ends_at, group_id, private, author_id, reminder_sent_at, created_at)
SELECT 'event ' || g, now() + ((g - 25000) * interval '10 minutes'),
       now() + ((g - 25000) * interval '10 minutes') + interval '2 hours',
       CASE WHEN g % 5 = 0 THEN 1 + (g % 5000) END, g % 5 = 0 AND (1 + (g % 5000)) % 4 = 0, 1 + (g % 2000),
       CASE WHEN g < 25000 THEN now() END, now()
FROM generate_series(1, 50000) g;
ANALYZE;
"""

BIG_TABLES = {"forum_threads", "forum_replies", "groups", "group_members", "events"}


@pytest.fixture(scope="module")
def loaded_database(postgres_service: PostgresServer) -> Iterator[str]:
    url = fresh_postgres_url(postgres_service)
    postgres_service.psql(SEED, database=url.rsplit("/", 1)[1])
    yield url


PINNED = frozenset({"ix_forum_threads_latest", "ix_forum_threads_top", "ix_forum_threads_new"})


def thread_cases() -> list[tuple[str, sa.Select[Any], str | frozenset[str]]]:
    """Each sort's list, pinned part and the rest, first page and after a cursor from mid-list."""
    keys = {"latest": NOW - timedelta(hours=10), "top": 40, "new": NOW - timedelta(days=10)}
    cases: list[tuple[str, sa.Select[Any], str | frozenset[str]]] = []
    for sort, key in keys.items():
        index = f"ix_forum_threads_{sort}"
        cursor = forum.ThreadCursor(sort, False, key, 25_000)
        # the few pinned threads of a category: any of the three indexes finds them (their leading
        # columns are the same) and sorting a handful is free, so PostgreSQL may pick any
        cases += [(f"threads {sort} (pinned)", forum.threads_query(3, True, sort, None, 21), PINNED),
                  (f"threads {sort}", forum.threads_query(3, False, sort, None, 21), index),
                  (f"threads {sort} (cursor)", forum.threads_query(3, False, sort, cursor, 21), index)]
    return cases


CASES: list[tuple[str, sa.Select[Any], str | frozenset[str]]] = [
    *thread_cases(),
    ("replies", forum.replies_query(42, None, 20), "ix_forum_replies_thread_id_id"),
    ("replies (cursor)", forum.replies_query(42, 60_000, 20), "ix_forum_replies_thread_id_id"),
    # public groups and the viewer's private ones: the primary key backwards, memberships by user
    ("groups", groups.groups_query(7, None, 20), "pk_groups"),
    ("groups (cursor)", groups.groups_query(7, 2_500, 20), "ix_group_members_user_id_group_id"),
    ("events upcoming", groups.events_query(7, "upcoming", NOW, None, None, 20), "ix_events_starts_at_id"),
    ("events upcoming (cursor)", groups.events_query(7, "upcoming", NOW, None, (NOW + timedelta(days=20), 28_000),
                                                     20), "ix_events_starts_at_id"),
    ("events past", groups.events_query(7, "past", NOW, None, None, 20), "ix_events_starts_at_id"),
    ("events past (cursor)", groups.events_query(7, "past", NOW, None, (NOW - timedelta(days=20), 22_000), 20),
     "ix_events_starts_at_id"),
    ("a group's events upcoming", groups.events_query(7, "upcoming", NOW, 5, None, 20),
     "ix_events_group_id_starts_at_id"),
    ("a group's events past", groups.events_query(7, "past", NOW, 5, None, 20), "ix_events_group_id_starts_at_id"),
    ("due reminders", groups.due_reminders_query(NOW, 60), "ix_events_starts_at_id"),
    ("a room's group", groups.room_group_query(1234), "ix_groups_room_channel_id"),
]


async def explain(url: str, query: sa.Select[Any]) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(url)
    try:
        raw = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {compiled(query)}")
    finally:
        await connection.close()
    return list(plan_nodes(json.loads(raw)[0]["Plan"]))


async def test_community_queries_use_their_indexes(loaded_database: str) -> None:
    """One database, every case (seeding once takes a few seconds; EXPLAIN is instant)."""
    connection = await asyncpg.connect(loaded_database)
    try:
        counts = [await connection.fetchval(f"SELECT count(*) FROM {table}")
                  for table in ("forum_threads", "forum_replies", "groups", "group_members", "events")]
        assert counts == [50_000, 100_000, 5_000, 50_000, 50_000]
        # the room lookup finds the group whose room it is
        room = await connection.fetchval("SELECT room_channel_id FROM groups WHERE id = 40")
        found = await connection.fetch(compiled(groups.room_group_query(room)))
        assert [(r["id"], r["visibility"]) for r in found] == [(40, "private")]
    finally:
        await connection.close()
    failures = []
    for name, query, index in CASES:
        nodes = await explain(loaded_database, query)
        used, scanned = index_used(nodes), seq_scanned(nodes) & BIG_TABLES
        wanted = {index} if isinstance(index, str) else index
        if not used & wanted or scanned:
            failures.append((name, index, sorted(used), sorted(scanned), [n["Node Type"] for n in nodes]))
    assert not failures, "\n".join(map(str, failures))
