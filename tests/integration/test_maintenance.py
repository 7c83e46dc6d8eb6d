"""Maintenance against real SQLite and real PostgreSQL/Redis: archiving moves every message exactly
once (even when interrupted), clean-up removes only what expired, vacuum runs outside a
transaction, and a scheduled task runs on exactly one of two replicas sharing Redis.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import (
    channels,
    maintenance_runs,
    messages,
    messages_archive,
    notifications,
    reactions,
    refresh_tokens,
    sessions,
    user_tokens,
    users,
)
from server.db.types import utcnow
from server.infra.locks import Lock, MemoryLock, make_lock
from server.infra.redis import RedisClients
from server.observability.metrics import Metrics
from server.ops.maintenance import ARCHIVED_COLUMNS, Maintenance
from server.ops.scheduler import MaintenanceScheduler, Schedule
from server.settings import Settings
from tests.conftest import fresh_postgres_url, fresh_sqlite_url, make_settings
from tests.support.appserver import AppServer
from tests.support.services import PostgresServer, RedisServer

NOW = utcnow().replace(microsecond=0)
OLD_MESSAGES = 10_000
RECENT_MESSAGES = 25


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _settings(backend: dict[str, Any], **overrides: Any) -> Settings:
    return make_settings(**backend, **overrides)


async def _user(db: Database, name: str = "mason") -> int:
    return int(await db.fetch_val("test.user", users.insert().values(
        username=name, created_at=NOW, updated_at=NOW).returning(users.c.id)))


async def _channel(db: Database, name: str) -> int:
    return int(await db.fetch_val("test.channel", channels.insert().values(
        name=name, kind="room", created_at=NOW).returning(channels.c.id)))


def _message(i: int, channel_id: int, author_id: int, created_at: datetime) -> dict[str, Any]:
    """Every column filled in varied ways: NULLs, unicode, escapes, nested JSON, floats."""
    body = None if i % 50 == 0 else (
        f"message {i}: héllo wörld — 日本語 🎮🧱 \"quoted\" 'single' \\ back\nline two\ttab é"
    )
    data = None if i % 7 == 0 else {
        "i": i, "text": "ünïcödé ✓ 🚀 \u202e", "ratio": i / 3, "big": 2**53 + i,
        "nested": {"list": [1, 2.5, None, True, "ß"], "empty": {}, "quote": "a\"b"},
    }
    return {
        "channel_id": channel_id,
        "offset": i + 1,
        "author_id": None if i % 3 == 0 else author_id,
        "body": body,
        "data": data,
        "reply_to_id": i - 1 if i % 5 == 0 and i > 0 else None,
        "nonce": f"nonce-{i}" if i % 2 else None,
        "created_at": created_at,
        "edited_at": created_at + timedelta(minutes=5, microseconds=i) if i % 11 == 0 else None,
        "deleted_at": created_at + timedelta(hours=1) if i % 13 == 0 else None,
    }


PYTHON_ROWS = 200  # old rows written through SQLAlchemy's own JSON and datetime encoding

def _remainders(divisors: tuple[int, ...]) -> str:
    # No `%`: `databases` %-formats SQLite statements for its debug log and fails on a literal one.
    return ", ".join(f"i - (i / {d}) * {d} AS r{d}" for d in divisors)


_INSERT_GENERATED = """
    INSERT INTO messages (channel_id, "offset", author_id, body, data, reply_to_id, nonce,
                          created_at, edited_at, deleted_at)
    SELECT CAST(:channel AS bigint), i + 1, CASE WHEN r3 = 0 THEN NULL ELSE CAST(:author AS bigint) END,
           CASE WHEN r50 = 0 THEN NULL ELSE
               'generated ' || i || ': héllo — 日本語 🎮🧱 "q" ''s'' \\' || {newline} || 'ß' END,
           CASE WHEN r7 = 0 THEN NULL ELSE {obj}('i', i, 'text', 'ünï ✓ 🚀', 'ratio', i / 3.0,
               'nested', {obj}('list', {arr}(1, 2.5, NULL, {true}, 'ß'))) END,
           CASE WHEN r5 = 0 THEN i - 1 END, CASE WHEN r2 = 1 THEN 'gen-' || i END,
           ts, CASE WHEN r11 = 0 THEN {plus_5m} END, CASE WHEN r13 = 0 THEN {plus_1h} END
    FROM series
"""
_REMAINDERS = _remainders((2, 3, 5, 7, 11, 13, 50, 997))

# Most old rows come from one INSERT ... SELECT over a series: compiling 10,000 rows of
# parameters in Python would take most of this file's time budget.
_GENERATE = {
    "postgresql": f"""
        WITH series AS (
            SELECT i, {_REMAINDERS},
                   CAST(:first AS timestamptz) + i * interval '1 second'
                       + (i - (i / 997) * 997) * interval '1 microsecond' AS ts
            FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS i)
    """ + _INSERT_GENERATED.format(
        newline="chr(10)", obj="jsonb_build_object", arr="jsonb_build_array", true="true",
        plus_5m="ts + interval '5 minutes'", plus_1h="ts + interval '1 hour'"),
    "sqlite": f"""
        WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :stop),
        series AS (
            SELECT i, {_REMAINDERS},
                   datetime(:first, '+' || i || ' seconds') || '.'
                       || substr('000000' || (i - (i / 997) * 997), -6) AS ts
            FROM n)
    """ + _INSERT_GENERATED.format(
        newline="char(10)", obj="json_object", arr="json_array", true="json('true')",
        plus_5m="datetime(ts, '+5 minutes') || substr(ts, 20)",
        plus_1h="datetime(ts, '+1 hour') || substr(ts, 20)"),
}


async def _seed_messages(db: Database, old: int = OLD_MESSAGES, recent: int = RECENT_MESSAGES) -> None:
    """`old` messages from ~120 days ago (some through SQLAlchemy, most generated in SQL) and
    `recent` from today, which archiving must leave alone."""
    author = await _user(db)
    channel_id = await _channel(db, "room:archive")
    first_old = NOW - timedelta(days=120)

    def old_at(i: int) -> datetime:
        return first_old + timedelta(seconds=i, microseconds=i % 997)

    head = [_message(i, channel_id, author, old_at(i)) for i in range(PYTHON_ROWS)]
    tail = [_message(old + i, channel_id, author, NOW - timedelta(hours=1, seconds=i)) for i in range(recent)]
    first: Any = first_old if db.dialect == "postgresql" else first_old.strftime("%Y-%m-%d %H:%M:%S")
    assert first_old.microsecond == 0
    async with db.transaction():
        await db.execute("test.seed_messages", messages.insert().values(head))
        await db.execute("test.seed_generated", _GENERATE[db.dialect], {
            "channel": channel_id, "author": author, "first": first, "start": PYTHON_ROWS, "stop": old - 1})
        if tail:
            await db.execute("test.seed_recent", messages.insert().values(tail))


def _as_text(table: sa.Table) -> sa.Select[Any]:
    """Every message column as the database stores it, so the comparison is byte for byte."""
    return sa.select(*(sa.cast(table.c[name], sa.Text).label(name) for name in ARCHIVED_COLUMNS)
                     ).order_by(table.c.id)


def _decoded(table: sa.Table) -> sa.Select[Any]:
    return sa.select(*(table.c[name] for name in ARCHIVED_COLUMNS)).order_by(table.c.id)


def _values(row: Any) -> tuple[Any, ...]:
    # Iterating a `databases` Record yields its keys and `_mapping` skips the result processors
    # (JSON stays a string on asyncpg); indexing processes each value.
    return tuple(row[index] for index in range(len(row._mapping)))


async def _snapshot(db: Database, table: sa.Table, *, decoded: bool = False) -> list[tuple[Any, ...]]:
    """Every message column of `table` by id: as stored text, or as the app reads it."""
    query = _decoded(table) if decoded else _as_text(table)
    return [_values(row) for row in await db.fetch_all("test.snapshot", query)]


async def _count(db: Database, table: sa.Table) -> int:
    return int(await db.fetch_val("test.count", sa.select(sa.func.count()).select_from(table)))


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return float(metrics.registry.get_sample_value(name, labels) or 0.0)


async def _runs(db: Database, task: str | None = None) -> list[Any]:
    query = sa.select(maintenance_runs).order_by(maintenance_runs.c.id)
    if task is not None:
        query = query.where(maintenance_runs.c.task == task)
    return await db.fetch_all("test.runs", query)


# --- archive (acceptance 4) ------------------------------------------------------------------


async def test_archive_moves_every_old_message_byte_for_byte(
    backend: dict[str, Any], database: Database
) -> None:
    await _seed_messages(database)
    old = sa.select(messages.c.id).where(messages.c.created_at < NOW - timedelta(days=90))
    some_old = [row["id"] for row in await database.fetch_all("test.old_ids", old.limit(3))]
    author = await database.fetch_val("test.author", sa.select(users.c.id).limit(1))
    await database.execute("test.react", reactions.insert().values(
        [{"message_id": mid, "user_id": author, "emoji": "👍", "created_at": NOW} for mid in some_old]))
    before = await _snapshot(database, messages)
    before_decoded = await _snapshot(database, messages, decoded=True)
    metrics = Metrics()
    maintenance = Maintenance(database, _settings(backend), metrics, clock=lambda: NOW)

    result = await maintenance.run("archive")

    assert result.status == "ok"
    assert result.counts == {"messages": OLD_MESSAGES, "batches": OLD_MESSAGES // 1000}
    assert await _snapshot(database, messages_archive) == before[:OLD_MESSAGES]
    archived = await _snapshot(database, messages_archive, decoded=True)
    assert archived == before_decoded[:OLD_MESSAGES]
    bodies = {row[ARCHIVED_COLUMNS.index("body")] for row in archived}
    assert any("🎮" in (body or "") and "\n" in (body or "") for body in bodies)
    assert None in bodies
    datas = [row[ARCHIVED_COLUMNS.index("data")] for row in archived]
    assert datas[1]["nested"]["list"] == [1, 2.5, None, True, "ß"]
    assert await _snapshot(database, messages) == before[OLD_MESSAGES:]
    stamps = await database.fetch_all("test.stamps", sa.select(messages_archive.c.archived_at).distinct())
    assert [row["archived_at"] for row in stamps] == [NOW]
    assert await _count(database, reactions) == 0, "reactions of archived messages cascade away"
    assert _sample(metrics, "vonix_maintenance_rows_total", task="archive") == OLD_MESSAGES

    again = await maintenance.run("archive")
    assert again.status == "ok"
    assert again.counts == {"messages": 0, "batches": 0}
    assert await _count(database, messages_archive) == OLD_MESSAGES
    runs = await _runs(database, "archive")
    assert [(run["status"], run["counts"]) for run in runs] == [
        ("ok", {"messages": OLD_MESSAGES, "batches": 10}), ("ok", {"messages": 0, "batches": 0})]


@pytest.mark.parametrize("interruption", ["cancel", "fail"])
async def test_interrupted_archive_loses_and_duplicates_nothing(
    backend: dict[str, Any], database: Database, monkeypatch: pytest.MonkeyPatch, interruption: str
) -> None:
    """Interrupt batch 4 between its copy and its delete: the batch must roll back whole."""
    await _seed_messages(database)
    before = await _snapshot(database, messages)
    maintenance = _maintenance_for(database, backend)
    real_execute = database.execute
    deletes = 0

    async def execute(name: str, query: Any, values: Any = None) -> Any:
        nonlocal deletes
        if name == "maintenance.archive_delete":
            deletes += 1
            if deletes == 4:
                if interruption == "fail":
                    raise RuntimeError("disk full")
                # Cancel while the DELETE is in flight in the driver, as a shutdown would.
                current = asyncio.current_task()
                assert current is not None
                asyncio.get_running_loop().call_soon(current.cancel)
        return await real_execute(name, query, values)

    monkeypatch.setattr(database, "execute", execute)
    run = asyncio.create_task(maintenance.run("archive"))
    if interruption == "cancel":
        with pytest.raises(asyncio.CancelledError):
            await run
    else:
        assert (await run).status == "failed"
    monkeypatch.setattr(database, "execute", real_execute)

    moved = await _count(database, messages_archive)
    assert moved == 3000, "three whole batches moved, the interrupted one rolled back"
    remaining = [row["id"] for row in await database.fetch_all("test.ids", sa.select(messages.c.id))]
    archived = [row["id"] for row in await database.fetch_all("test.ids", sa.select(messages_archive.c.id))]
    assert not set(remaining) & set(archived)
    assert sorted(remaining + archived) == [int(row[0]) for row in before]
    [record] = await _runs(database, "archive")
    assert record["status"] == ("cancelled" if interruption == "cancel" else "failed")
    assert record["counts"] == {"messages": 3000, "batches": 3}
    assert record["finished_at"] is not None

    resumed = await maintenance.run("archive")
    assert resumed.counts == {"messages": OLD_MESSAGES - 3000, "batches": 7}
    assert await _snapshot(database, messages_archive) == before[:OLD_MESSAGES]
    assert (await maintenance.run("archive")).counts["messages"] == 0


def _maintenance_for(database: Database, backend: dict[str, Any], **settings: Any) -> Maintenance:
    return Maintenance(database, _settings(backend, **settings), Metrics(), clock=lambda: NOW)


# --- clean-up and vacuum ---------------------------------------------------------------------


async def test_cleanup_deletes_only_what_expired(backend: dict[str, Any], database: Database) -> None:
    user = await _user(database)
    soon, past = NOW + timedelta(days=1), NOW - timedelta(seconds=1)
    for sid, expires in (("expired-1", past), ("expired-2", past), ("live", soon)):
        await database.execute("test.session", sessions.insert().values(
            id=sid, user_id=user, created_at=NOW, last_active_at=NOW, expires_at=expires))
        await database.execute("test.refresh", refresh_tokens.insert().values(
            session_id=sid, token_hash=f"hash-{sid}", created_at=NOW, expires_at=expires))
    for n, expires in enumerate((past, past, past, soon)):
        await database.execute("test.token", user_tokens.insert().values(
            user_id=user, purpose="reset", token_hash=f"reset-{n}", created_at=NOW, expires_at=expires))
    for age in (31, 45, 400, 29, 0):
        await database.execute("test.notification", notifications.insert().values(
            user_id=user, kind="mention", data={"age": age}, created_at=NOW - timedelta(days=age)))
    metrics = Metrics()
    maintenance = Maintenance(database, _settings(backend, MAINTENANCE_BATCH_SIZE=2), metrics,
                              clock=lambda: NOW)

    result = await maintenance.run("cleanup")

    assert result.status == "ok"
    assert result.counts == {"sessions": 2, "user_tokens": 3, "notifications": 3}
    left = await database.fetch_all("test.sessions", sa.select(sessions.c.id))
    assert [row["id"] for row in left] == ["live"]
    tokens = await database.fetch_all("test.refresh", sa.select(refresh_tokens.c.session_id))
    assert [row["session_id"] for row in tokens] == ["live"], "refresh tokens go with their session"
    assert await _count(database, user_tokens) == 1
    kept = await database.fetch_all("test.notifications", sa.select(notifications.c.data))
    assert sorted(row["data"]["age"] for row in kept) == [0, 29]
    assert _sample(metrics, "vonix_maintenance_rows_total", task="cleanup") == 8
    assert (await maintenance.run("cleanup")).counts == {"sessions": 0, "user_tokens": 0, "notifications": 0}


async def test_vacuum_runs_outside_a_transaction(backend: dict[str, Any], database: Database) -> None:
    await _seed_messages(database, old=2000, recent=0)
    maintenance = _maintenance_for(database, backend)
    await maintenance.run("archive")

    result = await maintenance.run("vacuum")

    assert result.status == "ok", result
    assert result.counts["bytes_before"] > 0
    assert result.counts["bytes_after"] > 0
    if database.dialect == "postgresql":
        analyzed = await database.fetch_val("test.analyzed", "SELECT last_vacuum IS NOT NULL AND "
                                            "last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                            "WHERE relname = 'messages'")
        assert analyzed is True
    else:
        stats = await database.fetch_val("test.analyzed", "SELECT count(*) FROM sqlite_stat1")
        assert stats > 0


async def test_each_run_is_recorded_logged_and_measured(
    backend: dict[str, Any], database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    maintenance = Maintenance(database, _settings(backend), metrics, instance="replica-a",
                              clock=lambda: NOW)

    await maintenance.run("cleanup")

    [record] = await _runs(database)
    assert (record["task"], record["instance"], record["status"]) == ("cleanup", "replica-a", "ok")
    assert record["started_at"] == record["finished_at"] == NOW
    assert record["counts"] == {"sessions": 0, "user_tokens": 0, "notifications": 0}
    assert await maintenance.last_success("cleanup") == NOW
    assert await maintenance.last_success("archive") is None
    assert _sample(metrics, "vonix_maintenance_runs_total", task="cleanup", outcome="ok") == 1
    assert _sample(metrics, "vonix_maintenance_runs_total", task="cleanup", outcome="failed") == 0
    assert _sample(metrics, "vonix_maintenance_duration_seconds_count", task="cleanup") == 1
    assert _sample(metrics, "vonix_maintenance_last_success_timestamp_seconds", task="cleanup") > 0
    [line] = [r for r in caplog.records
              if isinstance(r.msg, dict) and r.msg.get("event") == "maintenance_run"]
    assert line.msg["task"] == "cleanup"
    assert line.msg["counts"] == "sessions=0 user_tokens=0 notifications=0"


# --- scheduling (acceptance 5) -----------------------------------------------------------------


async def _lock_for(backend: dict[str, Any], stack: list[RedisClients]) -> Lock:
    """The lock each backend's replicas share: Redis (scaled) or one process's memory lock."""
    if "REDIS_URL" not in backend:
        return MemoryLock()
    redis = RedisClients(backend["REDIS_URL"], Metrics(), timeout=0.5)
    stack.append(redis)
    return make_lock(redis)


async def test_schedule_survives_restart_and_honours_interval(
    backend: dict[str, Any], database: Database
) -> None:
    """A restarted (or second) replica reads the last success from the database and waits."""
    clock = FakeClock(NOW)
    settings = _settings(backend)
    schedule = Schedule("cleanup", 3600)
    first = MaintenanceScheduler(Maintenance(database, settings, Metrics(), clock=clock), MemoryLock(),
                                 (schedule,), first_delay=0)
    assert await first.tick(schedule) == 3600

    clock.advance(600)
    metrics = Metrics()
    restarted = MaintenanceScheduler(Maintenance(database, settings, metrics, clock=clock), MemoryLock(),
                                     (schedule,), first_delay=0)
    assert await restarted.tick(schedule) == pytest.approx(3000)
    assert _sample(metrics, "vonix_maintenance_skipped_total", task="cleanup", reason="not_due") == 1

    clock.advance(3000)
    assert await restarted.tick(schedule) == 3600
    assert [(run["instance"], run["status"]) for run in await _runs(database)] == [
        (settings.instance_id, "ok"), (settings.instance_id, "ok")]


async def test_check_skips_while_another_replica_holds_the_lock(
    backend: dict[str, Any], database: Database
) -> None:
    clients: list[RedisClients] = []
    lock = await _lock_for(backend, clients)
    try:
        token = await lock.acquire("maintenance:archive", 30)
        assert token is not None
        metrics = Metrics()
        scheduler = MaintenanceScheduler(Maintenance(database, _settings(backend), metrics), lock,
                                         (Schedule("archive", 3600),), first_delay=0, busy_retry=5)
        assert await scheduler.tick(Schedule("archive", 3600)) == 5
        assert await _runs(database) == []
        assert _sample(metrics, "vonix_maintenance_skipped_total", task="archive", reason="locked") == 1
        assert await lock.release("maintenance:archive", token)
        assert await scheduler.tick(Schedule("archive", 3600)) == 3600
        assert [run["status"] for run in await _runs(database)] == ["ok"]
    finally:
        for redis in clients:
            await redis.close()


async def test_two_replicas_racing_run_each_task_exactly_once(
    backend: dict[str, Any], database: Database
) -> None:
    """Several schedulers (two replicas, each checking twice) start together on one database."""
    clients: list[RedisClients] = []
    shared_memory = MemoryLock()
    schedules = (Schedule("cleanup", 3600), Schedule("archive", 3600), Schedule("vacuum", 3600))
    replicas = []
    try:
        for name in ("replica-a", "replica-b", "replica-c"):
            lock = await _lock_for(backend, clients) if "REDIS_URL" in backend else shared_memory
            replicas.append(MaintenanceScheduler(
                Maintenance(database, _settings(backend), Metrics(), instance=name), lock, schedules,
                first_delay=0))
        await asyncio.gather(*(replica.tick(s) for replica in replicas for s in schedules for _ in (1, 2)))
    finally:
        for redis in clients:
            await redis.close()
    runs = await _runs(database)
    assert sorted(run["task"] for run in runs) == ["archive", "cleanup", "vacuum"]
    assert {run["status"] for run in runs} == {"ok"}


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_server_runs_the_scheduler_only_when_enabled(
    tmp_path: Any, sqlite_template: Any, enabled: bool
) -> None:
    url = fresh_sqlite_url(sqlite_template, tmp_path)
    settings = make_settings(DATABASE_URL=url, MAINTENANCE_FIRST_DELAY=0, MAINTENANCE_ENABLED=enabled)
    async with AppServer(settings) as server:
        db = server.resources.db
        deadline = asyncio.get_running_loop().time() + (5 if enabled else 0.5)
        while asyncio.get_running_loop().time() < deadline:
            runs = [run for run in await _runs(db) if run["status"] == "ok"]
            if len(runs) == 4:
                break
            await asyncio.sleep(0.05)
    assert len(runs) == (4 if enabled else 0)


@pytest.mark.slow
async def test_two_app_instances_on_one_redis_run_a_scheduled_task_once(
    postgres_service: PostgresServer, redis_service: RedisServer
) -> None:
    """Acceptance 5: two real app servers (PostgreSQL + one Redis) with schedulers racing."""
    import redis as redis_sync

    redis_sync.Redis.from_url(redis_service.url).flushall()
    url = fresh_postgres_url(postgres_service)
    common = {"DATABASE_URL": url, "REDIS_URL": redis_service.url, "MAINTENANCE_FIRST_DELAY": 0,
              "MIGRATE_ON_START": False}
    servers = [AppServer(make_settings(**common, VONIX_INSTANCE_ID=f"replica-{n}")) for n in "ab"]
    await asyncio.gather(*(server.start() for server in servers))
    try:
        def attempts(task: str) -> float:
            return sum(_sample(server.resources.metrics, name, task=task, **labels)
                       for server in servers
                       for name, labels in (("vonix_maintenance_runs_total", {"outcome": "ok"}),
                                            ("vonix_maintenance_skipped_total", {"reason": "locked"}),
                                            ("vonix_maintenance_skipped_total", {"reason": "not_due"})))

        deadline = asyncio.get_running_loop().time() + 10
        while any(attempts(task) < 2 for task in ("cleanup", "archive", "vacuum", "mc_status_history")):
            assert asyncio.get_running_loop().time() < deadline, "both replicas should have checked"
            await asyncio.sleep(0.05)
        db = servers[0].resources.db
        runs = await _runs(db)
    finally:
        await asyncio.gather(*(server.stop() for server in servers))

    assert sorted((run["task"], run["status"]) for run in runs) == [
        ("archive", "ok"), ("cleanup", "ok"), ("mc_status_history", "ok"), ("vacuum", "ok")]
    for task in ("cleanup", "archive", "vacuum", "mc_status_history"):
        ran = [_sample(s.resources.metrics, "vonix_maintenance_runs_total", task=task, outcome="ok")
               for s in servers]
        assert sorted(ran) == [0, 1], f"{task} ran on exactly one replica"
