"""Fixtures shared by every test tier.

`backend` runs a test twice: *embedded* (SQLite file + in-process broker) and *scaled* (a fresh
PostgreSQL database from a migrated template + the session's real Redis). The realtime, cache,
rate-limit and presence tests add a third mode, *cluster* (`THREE_MODES`): the same PostgreSQL with a
real Redis Cluster of 3 masters + 3 replicas and `REDIS_CLUSTER=true` (issue 19). `scaled_backend`
(several replicas sharing the services) takes `SCALED_AND_CLUSTER` the same way.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.db import migrate
from server.db.urls import parse_database_url
from server.settings import Settings, load_settings
from tests.support.appserver import AppServer
from tests.support.cluster import RedisClusterServers
from tests.support.services import PostgresServer, RedisServer

TEMPLATE_DB = "vonix_template"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: never read a developer's .env."""
    # No Minecraft heads from the internet: a test that wants them sets a local stand-in template.
    # No daily-login XP on sign-in: tests count the other awards exactly (test_xp turns it on).
    values: dict[str, Any] = {"VONIX_ENV": "test", "_env_file": None, "MINECRAFT_AVATAR_URL": "",
                              "XP_DAILY_LOGIN": "false",
                              "MEDIA_DIR": tempfile.mkdtemp(prefix="vonix-media-")}
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session", autouse=True)
def _structured_logging() -> None:
    """Route structlog through the stdlib so `caplog` sees every line, as the app does."""
    from server.observability.logging import configure_logging

    configure_logging("INFO", json_logs=False)


@pytest.fixture(scope="session")
def redis_service() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster_service() -> Iterator[RedisClusterServers]:
    """One cluster per test process, started by the first test that asks for it. Tests that kill
    or reshard nodes start their own (tests/integration/test_cluster_broker.py)."""
    servers = RedisClusterServers().start()
    yield servers
    servers.cleanup()


def flushed_cluster(servers: RedisClusterServers) -> str:
    """Empty every master (data and cached scripts); the cluster's URL."""
    for node in servers.masters_now():
        node.command("flushall")
        node.command("script", "flush")
    return servers.url


@pytest.fixture(scope="session")
def postgres_service() -> Iterator[PostgresServer]:
    server = PostgresServer().init().start()
    server.psql(f"CREATE DATABASE {TEMPLATE_DB}")
    migrate.upgrade(parse_database_url(server.url(TEMPLATE_DB)))
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(parse_database_url(f"sqlite:///{path}"))
    return path


def fresh_postgres_url(server: PostgresServer) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    return server.url(name)


def fresh_sqlite_url(template: Path, directory: Path) -> str:
    target = directory / f"vonix-{uuid.uuid4().hex[:8]}.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


# Parametrize a test (or a module's tests) over the cluster mode too: the argument overrides the
# fixture's own params.
THREE_MODES = pytest.mark.parametrize("backend", ["embedded", "scaled", "cluster"], indirect=True)
SCALED_AND_CLUSTER = pytest.mark.parametrize("scaled_backend", ["scaled", "cluster"], indirect=True)


def cluster_backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    postgres = request.getfixturevalue("postgres_service")
    url = flushed_cluster(request.getfixturevalue("redis_cluster_service"))
    return {"DATABASE_URL": fresh_postgres_url(postgres), "REDIS_URL": url, "REDIS_CLUSTER": "true",
            "REDIS_HEALTH_INTERVAL": 0.5}


@pytest.fixture(params=["embedded", "scaled"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings overrides for a backend mode; scaled mode flushes the shared Redis first."""
    if request.param == "embedded":
        template = request.getfixturevalue("sqlite_template")
        return {"DATABASE_URL": fresh_sqlite_url(template, tmp_path)}
    if request.param == "cluster":
        return cluster_backend(request)
    postgres = request.getfixturevalue("postgres_service")
    redis = request.getfixturevalue("redis_service")
    import redis as redis_sync

    client = redis_sync.Redis.from_url(redis.url)
    client.flushall()
    client.close()
    return {"DATABASE_URL": fresh_postgres_url(postgres), "REDIS_URL": redis.url,
            "REDIS_HEALTH_INTERVAL": 0.5}


@pytest.fixture
async def app_server(backend: dict[str, Any]) -> AsyncIterator[AppServer]:
    async with AppServer(make_settings(**backend)) as server:
        yield server


@pytest.fixture
async def database(backend: dict[str, Any]) -> AsyncIterator[Any]:
    """A connected instrumented Database on the backend's fresh, migrated database."""
    from server.db.database import Database
    from server.observability.metrics import Metrics

    settings = make_settings(**backend)
    db = Database(settings.database, Metrics(), pool_max=10, slow_query_seconds=0.2)
    await db.connect()
    yield db
    await db.disconnect()


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    from tests.support.smtp import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def auth_server(backend: dict[str, Any], smtp_server: Any) -> AsyncIterator[AppServer]:
    """The app with real SMTP delivery to the test's aiosmtpd inbox."""
    async with AppServer(make_settings(SMTP_URL=smtp_server.url, **backend)) as server:
        yield server


@pytest.fixture
def scaled_backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Scaled mode only (tests about several replicas sharing PostgreSQL and Redis), or the cluster
    mode under `SCALED_AND_CLUSTER`."""
    import redis as redis_sync

    if getattr(request, "param", "scaled") == "cluster":
        return cluster_backend(request)
    postgres_service = request.getfixturevalue("postgres_service")
    redis_service = request.getfixturevalue("redis_service")
    client = redis_sync.Redis.from_url(redis_service.url)
    client.flushall()
    client.close()
    return {"DATABASE_URL": fresh_postgres_url(postgres_service), "REDIS_URL": redis_service.url,
            "REDIS_HEALTH_INTERVAL": 0.5}
