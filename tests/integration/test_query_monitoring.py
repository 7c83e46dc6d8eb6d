"""Every statement is named, timed and, when slow, logged by name and duration only."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import users
from server.db.types import utcnow
from server.observability.metrics import Metrics
from tests.conftest import fresh_postgres_url, make_settings
from tests.support.services import PostgresServer

MARKER = "parameter-value-7f3a91"


async def test_slow_query_is_histogrammed_and_logged_without_values(
    postgres_service: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    settings = make_settings(DATABASE_URL=fresh_postgres_url(postgres_service))
    db = Database(settings.database, metrics, slow_query_seconds=0.2)
    await db.connect()
    try:
        await db.fetch_val("test.sleepy", "SELECT pg_sleep(0.3)::text || :marker", {"marker": MARKER})
        await db.fetch_val("test.quick", "SELECT :marker", {"marker": MARKER})
    finally:
        await db.disconnect()

    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    samples = {(s.name, s.labels.get("query")): s.value
               for s in families["vonix_db_query_duration_seconds"].samples}
    assert samples[("vonix_db_query_duration_seconds_count", "test.sleepy")] == 1
    assert samples[("vonix_db_query_duration_seconds_sum", "test.sleepy")] >= 0.3
    slow = {s.labels["query"]: s.value for s in families["vonix_db_slow_queries"].samples
            if s.name.endswith("_total")}
    assert slow == {"test.sleepy": 1.0}

    slow_lines = [r for r in caplog.records if "slow_query" in r.getMessage()]
    assert len(slow_lines) == 1
    assert "test.sleepy" in slow_lines[0].getMessage()
    assert MARKER not in caplog.text
    assert db.recent_slow[0]["query"] == "test.sleepy"


async def test_unique_violation_is_translated(database: Database) -> None:
    now = utcnow()
    row = {"username": "Steve", "email": "steve@example.com", "created_at": now, "updated_at": now}
    await database.execute("users.insert", users.insert().values(**row))
    with pytest.raises(UniqueViolation) as info:
        await database.execute("users.insert", users.insert().values(
            **{**row, "username": "STEVE", "email": "other@example.com"}))
    assert info.value.constraint == "uq_users_username_lower"


async def test_pool_state_reports_connections(database: Database) -> None:
    await database.fetch_val("test.one", "SELECT 1")
    state = database.pool_state()
    assert state["size"] >= 1
    assert state["idle"] >= 0
