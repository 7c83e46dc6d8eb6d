"""Readiness follows the real Redis and PostgreSQL going away and coming back, without restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import TEMPLATE_DB, fresh_postgres_url, make_settings
from tests.support.appserver import AppServer
from tests.support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.slow]


async def _ready(server: AppServer) -> tuple[int, list[str]]:
    async with server.client() as client:
        response = await client.get("/api/ready")
    return response.status_code, response.json()["failed"]


async def _wait_ready(server: AppServer, status: int, timeout: float = 15) -> list[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        code, failed = await _ready(server)
        if code == status or asyncio.get_running_loop().time() > deadline:
            assert code == status, failed
            return failed
        await asyncio.sleep(0.2)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().init().start()
    server.psql(f"CREATE DATABASE {TEMPLATE_DB}")
    yield server
    server.cleanup()


async def test_redis_stopped_and_restarted(own_redis: RedisServer, sqlite_template) -> None:
    settings = make_settings(REDIS_URL=own_redis.url, REDIS_HEALTH_INTERVAL=0.2, REDIS_TIMEOUT=0.5)
    async with AppServer(settings) as server:
        assert (await _ready(server))[0] == 200
        own_redis.stop()
        started = asyncio.get_running_loop().time()
        failed = await _wait_ready(server, 503)
        assert failed == ["redis"]
        assert asyncio.get_running_loop().time() - started < 5, "readiness must not hang"
        async with server.client() as client:
            health = await client.get("/api/health")
        assert health.status_code == 200, "liveness stays up while Redis is down"
        own_redis.start()
        assert await _wait_ready(server, 200) == []


async def test_postgres_stopped_and_restarted(own_postgres: PostgresServer) -> None:
    url = fresh_postgres_url(own_postgres)
    async with AppServer(make_settings(DATABASE_URL=url, DB_TIMEOUT=1.0, MIGRATE_ON_START="true")) as server:
        assert (await _ready(server))[0] == 200
        own_postgres.stop()
        failed = await _wait_ready(server, 503)
        assert "database" in failed
        async with server.client() as client:
            body = (await client.get("/api/ready")).json()
        assert body["components"]["database"]["status"] == "down"
        own_postgres.start()
        assert await _wait_ready(server, 200) == []


async def test_database_behind_head_is_not_ready(own_postgres: PostgresServer) -> None:
    own_postgres.psql("CREATE DATABASE empty_db")
    settings = make_settings(DATABASE_URL=own_postgres.url("empty_db"), MIGRATE_ON_START="false")
    async with AppServer(settings) as server:
        code, failed = await _ready(server)
    assert code == 503
    assert failed == ["migrations"]
