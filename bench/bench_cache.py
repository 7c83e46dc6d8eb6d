"""Cache benchmark (issue 6): a cached read against the real uncached read, in one run.

What is read is what the server caches on every authenticated request: who a session is (the
session row, then the user row: `AuthService._load_identity`). Measured in process, against real
servers started here on free loopback ports (Redis; PostgreSQL when its binaries exist) and a
migrated SQLite file:
- uncached: the loader itself on SQLite and on PostgreSQL (two queries);
- L2 hit: L1 bounded to one entry and two keys read in turn, so every read misses L1 and is
  answered by Redis (one Lua round trip), decoded, and put back in L1;
- L1 hit: the value from process memory.
Latency: BENCH_READS sequential reads (p50 and p99 per read). Throughput: BENCH_CONCURRENCY tasks
reading for BENCH_SECONDS. Ratios compare each cached row with the uncached SQLite read.
Run: `make bench` or `python -m bench cache`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.table import print_table
from server.auth.service import AuthService
from server.auth.sessions import ClientInfo
from server.cache import Cache
from server.cache.redis import RedisShared
from server.db import migrate
from server.db.database import Database
from server.db.queries import users as user_queries
from server.db.urls import parse_database_url
from server.infra.redis import RedisClients
from server.observability.logging import configure_logging
from server.observability.metrics import Metrics
from server.settings import load_settings
from tests.support.services import PostgresServer, RedisServer, postgres_bin

READS = int(os.environ.get("BENCH_READS") or 5000)
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY") or 32)
SECONDS = float(os.environ.get("BENCH_SECONDS") or 2)

Read = Callable[[], Awaitable[Any]]


async def latency(read: Read, reads: int) -> tuple[float, float]:
    for _ in range(min(200, reads)):  # warm up
        await read()
    samples = []
    clock = time.perf_counter
    for _ in range(reads):
        started = clock()
        await read()
        samples.append(clock() - started)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99) - 1] * 1e6


async def throughput(reader: Callable[[int], Read]) -> float:
    """Reads per second of CONCURRENCY tasks; task i reads with `reader(i)` (its own key if it wants)."""
    done = 0
    deadline = time.perf_counter() + SECONDS

    async def worker(number: int) -> None:
        nonlocal done
        read = reader(number)
        while time.perf_counter() < deadline:
            await read()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    return done / (time.perf_counter() - started)


async def identity_store(url: str) -> tuple[Database, AuthService, str]:
    settings = load_settings(VONIX_ENV="test", DATABASE_URL=url, _env_file=None)
    db = Database(settings.database, Metrics(), pool_max=CONCURRENCY)
    await db.connect()
    auth = AuthService(settings, db)
    user_id = await user_queries.insert(db, username="bench_user", email="bench@example.com",
                                        password_hash=None, display_name="Bench")
    tokens = await auth.sessions.create(user_id, "member", ClientInfo("127.0.0.1", "bench"))
    return db, auth, tokens.session_id


def main() -> None:
    """Start the servers and migrate (synchronously: migrations run their own event loop), then measure."""
    configure_logging("WARNING", json_logs=False)
    work = Path(tempfile.mkdtemp(prefix="vonix-bench-cache-"))
    sqlite_url = f"sqlite:///{work / 'bench.db'}"
    migrate.upgrade(parse_database_url(sqlite_url))
    redis_server = RedisServer().start()
    postgres: PostgresServer | None = None
    try:
        try:
            postgres_bin()
            postgres = PostgresServer().init().start()
            postgres.psql("CREATE DATABASE bench")
            migrate.upgrade(parse_database_url(postgres.url("bench")))
        except Exception as exc:  # no PostgreSQL here: report SQLite only
            print(f"(PostgreSQL skipped: {exc.__class__.__name__})")
            if postgres is not None:
                postgres.cleanup()
            postgres = None
        asyncio.run(measure_all(sqlite_url, redis_server, postgres))
    finally:
        redis_server.cleanup()
        if postgres is not None:
            postgres.cleanup()


async def measure_all(sqlite_url: str, redis_server: RedisServer, postgres: PostgresServer | None) -> None:
    metrics = Metrics()
    clients = RedisClients(redis_server.url, metrics, timeout=1.0, health_interval=5.0)
    await clients.start()
    rows: list[list[object]] = []
    closers: list[Callable[[], Awaitable[None]]] = [clients.close]
    try:
        db, auth, session_id = await identity_store(sqlite_url)
        closers.append(db.disconnect)
        measured: dict[str, tuple[float, float, float]] = {}

        async def measure(name: str, reader: Callable[[int], Read], reads: int) -> None:
            p50, p99 = await latency(reader(0), reads)
            measured[name] = (p50, p99, await throughput(reader))

        await measure("uncached: SQLite (session + user rows)", lambda _n: lambda: auth._load_identity(session_id),
                      READS // 5)
        if postgres is not None:
            pg_db, pg_auth, pg_session = await identity_store(postgres.url("bench"))
            closers.append(pg_db.disconnect)
            await measure("uncached: PostgreSQL (session + user rows)",
                          lambda _n: lambda: pg_auth._load_identity(pg_session), READS // 5)

        # L2: every read clears L1 first (no await in between, so no other task refills it) and each
        # concurrent reader has its own session, so no read joins another's load: one Redis trip each.
        l2_cache = Cache(RedisShared(clients), ttl=3600)
        await l2_cache.start()
        closers.append(l2_cache.close)
        l2 = l2_cache.namespace("principal")
        user_id = (await auth._load_identity(session_id))["user_id"]
        client = ClientInfo("127.0.0.1", "bench")
        keys = [session_id] + [(await auth.sessions.create(user_id, "member", client)).session_id
                               for _ in range(CONCURRENCY - 1)]
        for key in keys:
            await l2_cache.get(l2, key, lambda key=key: auth._load_identity(key))

        def l2_reader(number: int) -> Read:
            key = keys[number]

            async def read() -> Any:
                l2_cache.l1.clear()
                return await l2_cache.get(l2, key, lambda: auth._load_identity(key))

            return read

        await measure("L2 hit: Redis", l2_reader, READS)
        assert l2_cache.counts["principal"]["loads"] == len(keys), "every L2 read must be a hit"

        l1_cache = Cache(RedisShared(clients), ttl=3600)
        await l1_cache.start()
        closers.append(l1_cache.close)
        l1 = l1_cache.namespace("principal")
        await measure("L1 hit: process memory",
                      lambda _n: lambda: l1_cache.get(l1, session_id, lambda: auth._load_identity(session_id)),
                      READS * 4)

        base_p50, _, base_rate = measured["uncached: SQLite (session + user rows)"]
        for name, (p50, p99, rate) in measured.items():
            rows.append([name, p50, p99, rate, f"{base_p50 / p50:.1f}x", f"{rate / base_rate:.1f}x"])
    finally:
        for close in reversed(closers):
            await close()

    print_table(
        f"Cached vs uncached read of a session's identity (latency: sequential; throughput: {CONCURRENCY} "
        f"concurrent readers for {SECONDS:g} s)",
        ["read", "p50 us", "p99 us", "reads/s", "p50 vs SQLite", "reads/s vs SQLite"],
        rows,
    )


if __name__ == "__main__":
    main()
