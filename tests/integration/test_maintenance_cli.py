"""`vonix maintenance`: prints counts on success, takes the same lock as the scheduler, and fails
with one clear line (no traceback) when the lock is held or Redis cannot be reached."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import redis as redis_sync
import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import channels, maintenance_runs, messages, messages_archive
from server.db.types import utcnow
from server.observability.metrics import Metrics
from tests.conftest import fresh_postgres_url, fresh_sqlite_url, make_settings
from tests.integration.test_cli import run_vonix
from tests.support.services import PostgresServer, RedisServer, free_port


async def _seed_old_messages(url: str, count: int) -> None:
    db = Database(make_settings(DATABASE_URL=url).database, Metrics())
    await db.connect()
    try:
        old = utcnow() - timedelta(days=200)
        channel_id = await db.fetch_val("test.channel", channels.insert().values(
            name="room:cli", kind="room", created_at=old).returning(channels.c.id))
        await db.execute("test.messages", messages.insert().values([
            {"channel_id": channel_id, "offset": n + 1, "body": f"old {n} ✓", "created_at": old}
            for n in range(count)]))
    finally:
        await db.disconnect()


async def _count(url: str, table: sa.Table) -> int:
    db = Database(make_settings(DATABASE_URL=url).database, Metrics())
    await db.connect()
    try:
        return int(await db.fetch_val("test.count", sa.select(sa.func.count()).select_from(table)))
    finally:
        await db.disconnect()


async def test_maintenance_all_prints_counts(tmp_path: Path, sqlite_template: Path) -> None:
    url = fresh_sqlite_url(sqlite_template, tmp_path)
    await _seed_old_messages(url, 7)

    result = run_vonix(["maintenance"], {"DATABASE_URL": url, "MAINTENANCE_BATCH_SIZE": "5"}, tmp_path)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "maintenance cleanup", "maintenance archive", "maintenance vacuum", "maintenance mc_status_history"]
    assert "sessions=0, user_tokens=0, notifications=0" in lines[0]
    assert "messages=7, batches=2" in lines[1]
    assert "bytes_before=" in lines[2]
    assert await _count(url, messages_archive) == 7
    assert await _count(url, maintenance_runs) == 4


async def test_maintenance_refuses_while_another_replica_holds_the_lock(
    tmp_path: Path, postgres_service: PostgresServer, redis_service: RedisServer
) -> None:
    client = redis_sync.Redis.from_url(redis_service.url)
    client.flushall()
    client.set("vonix:lock:maintenance:archive", "someone-else", px=30_000)
    url = fresh_postgres_url(postgres_service)
    try:
        result = run_vonix(["maintenance", "archive"], {"DATABASE_URL": url, "REDIS_URL": redis_service.url},
                           tmp_path)
    finally:
        client.delete("vonix:lock:maintenance:archive")
        client.close()

    assert result.returncode == 4
    [line] = [line for line in result.stderr.splitlines() if line.startswith("vonix:")]
    assert "archive" in line and "lock" in line
    assert "Traceback" not in result.stderr
    assert await _count(url, maintenance_runs) == 0


def test_maintenance_with_redis_unreachable_is_one_line(tmp_path: Path, sqlite_template: Path) -> None:
    url = fresh_sqlite_url(sqlite_template, tmp_path)
    env = {"DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_TIMEOUT": "0.3"}

    result = run_vonix(["maintenance", "cleanup"], env, tmp_path)

    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if line.startswith("vonix:")]
    assert len(lines) == 1 and "REDIS_URL" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
