"""The one instrumented path every SQL statement takes.

Each call names its statement (`"history_page"`, `"session_by_hash"`): the name labels a latency
histogram, appears in the slow-query log and is the unit the admin view ranks by. Parameter values
are never logged. SQLite connections get the pragmas Vonix relies on (WAL, foreign keys, busy
timeout) and are kept open between requests instead of one thread per query.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import databases
from databases.core import Transaction
from sqlalchemy.sql import ClauseElement

from server.db.errors import translate
from server.db.pg_connection import PooledConnection
from server.db.urls import DatabaseUrl
from server.observability.logging import get_logger
from server.observability.metrics import Metrics

log = get_logger("vonix.db")

Query = ClauseElement | str

SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
)


class _PooledSQLitePool:
    """Keeps idle aiosqlite connections (each one is a thread) and sets pragmas when opening."""

    def __init__(self, path: str, max_idle: int) -> None:
        self._path = path
        self._idle: list[aiosqlite.Connection] = []
        self._max_idle = max_idle
        self._memref = None
        self.opened = 0

    async def acquire(self) -> aiosqlite.Connection:
        if self._idle:
            return self._idle.pop()
        connection = aiosqlite.connect(database=self._path, isolation_level=None, timeout=5.0)
        await connection.__aenter__()
        for pragma in SQLITE_PRAGMAS:
            await connection.execute(pragma)
        # WAL is a property of the file (migrations set it); switching needs exclusive access, so
        # a second process starting at the same moment may find it locked: that is harmless.
        with contextlib.suppress(sqlite3.OperationalError):
            await connection.execute("PRAGMA journal_mode=WAL")
        self.opened += 1
        return connection

    async def release(self, connection: aiosqlite.Connection) -> None:
        if len(self._idle) < self._max_idle and connection.in_transaction is False:
            self._idle.append(connection)
        else:
            await connection.__aexit__(None, None, None)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.__aexit__(None, None, None)

    @property
    def idle(self) -> int:
        return len(self._idle)


class DatabaseUnavailable(Exception):
    """The database did not answer in time or refused the connection."""


class Database:
    """`databases.Database` behind named, timed, logged calls."""

    def __init__(
        self,
        url: DatabaseUrl,
        metrics: Metrics,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        timeout: float = 5.0,
        slow_query_seconds: float = 0.5,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.slow_query_seconds = slow_query_seconds
        options: dict[str, Any] = {}
        if url.is_postgres:
            options = {"min_size": pool_min, "max_size": pool_max, "timeout": timeout,
                       "command_timeout": max(timeout, 30.0), "connection_class": PooledConnection}
        self._db = databases.Database(url.for_databases, **options)
        self._sqlite_pool: _PooledSQLitePool | None = None
        if url.is_sqlite:
            self._sqlite_pool = _PooledSQLitePool(url.url.database or "", max_idle=pool_max)
            self._db._backend._pool = self._sqlite_pool  # type: ignore[attr-defined]
        self.query_latency = metrics.histogram(
            "vonix_db_query_duration_seconds", "Database statement latency by statement name.", ("query",)
        )
        self.query_errors = metrics.counter(
            "vonix_db_query_errors_total", "Database statements that raised, by statement name.", ("query",)
        )
        self.slow_queries = metrics.counter(
            "vonix_db_slow_queries_total", "Statements slower than the slow-query threshold.", ("query",)
        )
        self.pool_wait = metrics.histogram(
            "vonix_db_pool_wait_seconds", "Time spent waiting for a pooled connection.",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
        )
        self.pool_size = metrics.gauge("vonix_db_pool_connections", "Pool connections by state.", ("state",))
        self.recent_slow: list[dict[str, Any]] = []
        self.tracer: Any = None  # set when tracing is on; None costs nothing

    @property
    def dialect(self) -> str:
        return self.url.dialect

    async def connect(self) -> None:
        try:
            await asyncio.wait_for(self._db.connect(), timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            raise DatabaseUnavailable(f"cannot reach the database at {self.url.safe}: {exc}") from None
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot open the database at {self.url.safe}: {exc.__class__.__name__}: {exc}"
            ) from None

    async def disconnect(self) -> None:
        if self._db.is_connected:
            await self._db.disconnect()
        if self._sqlite_pool is not None:
            await self._sqlite_pool.close()

    @property
    def is_connected(self) -> bool:
        return self._db.is_connected

    # --- instrumented calls --------------------------------------------------------------
    @asynccontextmanager
    async def _run(self, name: str) -> AsyncIterator[databases.core.Connection]:
        if self.tracer is None:
            async with self._run_untraced(name) as connection:
                yield connection
            return
        with self.tracer.start_as_current_span(f"db {name}", attributes={
                "db.system.name": self.dialect, "db.operation.name": name}):
            async with self._run_untraced(name) as connection:
                yield connection

    @asynccontextmanager
    async def _run_untraced(self, name: str) -> AsyncIterator[databases.core.Connection]:
        """Acquire (timed as pool wait), run (timed per name), translate constraint errors."""
        requested = time.perf_counter()
        connection = self._db.connection()
        await connection.__aenter__()
        started = time.perf_counter()
        self.pool_wait.observe(started - requested)
        try:
            yield connection
        except BaseException as exc:
            self.query_errors.labels(name).inc()
            violation = translate(exc)
            if violation is not None:
                raise violation from exc
            raise
        finally:
            await connection.__aexit__(None, None, None)
            elapsed = time.perf_counter() - started
            self.query_latency.labels(name).observe(elapsed)
            if elapsed >= self.slow_query_seconds:
                self._record_slow(name, elapsed)

    def _record_slow(self, name: str, elapsed: float) -> None:
        self.slow_queries.labels(name).inc()
        duration_ms = round(elapsed * 1000, 1)
        log.warning("slow_query", query=name, duration_ms=duration_ms)
        self.recent_slow.append({"query": name, "duration_ms": duration_ms, "at": time.time()})
        del self.recent_slow[:-50]

    async def fetch_all(self, name: str, query: Query, values: Mapping[str, Any] | None = None) -> list[Any]:
        async with self._run(name) as connection:
            return list(await connection.fetch_all(query, values))  # type: ignore[arg-type]

    async def fetch_one(self, name: str, query: Query, values: Mapping[str, Any] | None = None) -> Any:
        async with self._run(name) as connection:
            return await connection.fetch_one(query, values)  # type: ignore[arg-type]

    async def fetch_val(self, name: str, query: Query, values: Mapping[str, Any] | None = None) -> Any:
        async with self._run(name) as connection:
            return await connection.fetch_val(query, values)  # type: ignore[arg-type]

    async def execute(self, name: str, query: Query, values: Mapping[str, Any] | None = None) -> Any:
        async with self._run(name) as connection:
            return await connection.execute(query, values)  # type: ignore[arg-type]

    async def execute_many(self, name: str, query: Query, values: Sequence[Mapping[str, Any]]) -> None:
        async with self._run(name) as connection:
            await connection.execute_many(query, list(values))  # type: ignore[arg-type]

    async def iterate(
        self, name: str, query: Query, values: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        async with self._run(name) as connection:
            async for row in connection.iterate(query, values):  # type: ignore[arg-type]
                yield row

    @asynccontextmanager
    async def driver(self, name: str) -> AsyncIterator[Any]:
        """The driver's own connection (asyncpg or aiosqlite), named and timed like any statement.

        For the few hot paths that batch and need the driver's array parameters or executemany
        without a compilation per row; everything else goes through the calls above.
        """
        async with self._run(name) as connection:
            yield connection.raw_connection

    def transaction(self) -> Transaction:
        return self._db.transaction()

    async def ping(self) -> float:
        """Round-trip a trivial statement; returns seconds. Raises DatabaseUnavailable."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._db.fetch_val("SELECT 1"), timeout=self.timeout)
        except Exception as exc:
            raise DatabaseUnavailable(f"{exc.__class__.__name__}: {exc}") from None
        return time.perf_counter() - started

    def pool_state(self) -> dict[str, Any]:
        """Pool size, in use and idle connections; also refreshes the pool gauge."""
        if self._sqlite_pool is not None:
            state: dict[str, Any] = {"kind": "sqlite", "size": self._sqlite_pool.opened,
                                     "idle": self._sqlite_pool.idle}
        else:
            pool = getattr(self._db._backend, "_pool", None)  # type: ignore[attr-defined]
            if pool is None:
                return {"kind": "postgresql", "size": 0, "idle": 0, "in_use": 0}
            size, idle = pool.get_size(), pool.get_idle_size()
            state = {"kind": "postgresql", "size": size, "idle": idle, "in_use": size - idle,
                     "max": pool.get_max_size()}
        self.pool_size.labels("total").set(state["size"])
        self.pool_size.labels("idle").set(state["idle"])
        return state
