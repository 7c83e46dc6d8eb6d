"""Database maintenance: the tasks, and the one place that runs, records and measures them.

Tasks (each `async (db, settings, clock, report)`, run by name):

- `cleanup`: deletes expired sessions (their refresh tokens cascade), expired mailed tokens
  (`user_tokens`: password reset, email verification) and notifications older than 30 days.
- `archive`: moves messages older than `ARCHIVE_AFTER_DAYS` into `messages_archive`.
- `vacuum`: `VACUUM (ANALYZE)` on PostgreSQL, `ANALYZE` + `VACUUM` on SQLite.
- `mc_status_history`: folds the game servers' per-poll status rows older than 48 hours into
  hourly rows and prunes both past `MC_STATUS_RETENTION_DAYS` (server/minecraft/history.py).

Every write is batched (`MAINTENANCE_BATCH_SIZE` rows) and each batch is one transaction, so a
run that is cancelled or fails part way leaves every batch either fully done or untouched, and
the next run simply continues. Batches also keep locks and the WAL small on a busy database.

`Maintenance.run` wraps a task: a `maintenance_runs` row (started, finished, status, counts), one
structured log line and the Prometheus families below. It does not take the replica lock; the
scheduler and the CLI do (`server.ops.scheduler.run_locked`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import (
    maintenance_runs,
    messages,
    messages_archive,
    notifications,
    sessions,
    user_tokens,
)
from server.db.types import UtcDateTime, utcnow
from server.observability.logging import get_logger
from server.observability.metrics import Metrics
from server.settings import Settings

log = get_logger("vonix.maintenance")

Clock = Callable[[], datetime]

NOTIFICATION_RETENTION = timedelta(days=30)
OUTCOMES = ("ok", "failed", "cancelled")
SKIP_REASONS = ("locked", "not_due")
DURATION_BUCKETS = (0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)


@dataclass
class Report:
    """What a task has done so far. Updated after every committed batch, so a failed or
    cancelled run still records exactly what it changed."""

    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted or moved
    details: dict[str, int] = field(default_factory=dict)  # batches, bytes, ...

    def add(self, table: str, count: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + count

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def counts(self) -> dict[str, int]:
        return {**self.rows, **self.details}


Task = Callable[[Database, Settings, Clock, Report], Awaitable[None]]


# --- tasks ---------------------------------------------------------------------------------


async def _delete_in_batches(
    db: Database, name: str, table: sa.Table, condition: sa.ColumnElement[bool], size: int
) -> int:
    """Delete matching rows `size` at a time; each DELETE is atomic on its own."""
    key = table.primary_key.columns.values()[0]
    deleted = 0
    while True:
        chosen = sa.select(key).where(condition).limit(size)
        statement = sa.delete(table).where(key.in_(chosen)).returning(key)
        count = len(await db.fetch_all(name, statement))
        deleted += count
        if count < size:
            return deleted


async def cleanup(db: Database, settings: Settings, clock: Clock, report: Report) -> None:
    """Delete what nobody can use any more: expired sessions and mailed tokens, old notifications."""
    now = clock()
    size = settings.maintenance_batch_size
    report.rows.update(sessions=0, user_tokens=0, notifications=0)
    report.add("sessions", await _delete_in_batches(
        db, "maintenance.expired_sessions", sessions, sessions.c.expires_at < now, size))
    report.add("user_tokens", await _delete_in_batches(
        db, "maintenance.expired_tokens", user_tokens, user_tokens.c.expires_at < now, size))
    report.add("notifications", await _delete_in_batches(
        db, "maintenance.old_notifications", notifications,
        notifications.c.created_at < now - NOTIFICATION_RETENTION, size))


ARCHIVED_COLUMNS = tuple(column.name for column in messages.c)


async def archive(db: Database, settings: Settings, clock: Clock, report: Report) -> None:
    """Move messages older than ARCHIVE_AFTER_DAYS into `messages_archive`, a batch at a time.

    Each batch picks its ids first (oldest ids first, locked with FOR UPDATE on PostgreSQL so an
    edit cannot slip between the copy and the delete), then copies those rows with INSERT ...
    SELECT (the database copies the values; nothing is decoded and re-encoded in Python) and
    deletes the same ids, all in one transaction.

    Reactions reference messages with ON DELETE CASCADE and have no archive table: archived
    messages lose their reactions.
    """
    now = clock()
    cutoff = now - timedelta(days=settings.archive_after_days)
    size = settings.maintenance_batch_size
    stamp = sa.literal(now, UtcDateTime())  # archived_at, the same for the whole run
    report.rows["messages"] = 0
    report.details["batches"] = 0
    while True:
        async with db.transaction():
            pick = (sa.select(messages.c.id).where(messages.c.created_at < cutoff)
                    .order_by(messages.c.id).limit(size).with_for_update())
            ids = [row["id"] for row in await db.fetch_all("maintenance.archive_pick", pick)]
            if not ids:
                return
            copy = sa.select(*(messages.c[name] for name in ARCHIVED_COLUMNS),
                             stamp).where(messages.c.id.in_(ids))
            await db.execute("maintenance.archive_insert", sa.insert(messages_archive).from_select(
                [*ARCHIVED_COLUMNS, "archived_at"], copy))
            await db.execute("maintenance.archive_delete",
                             sa.delete(messages).where(messages.c.id.in_(ids)))
        report.add("messages", len(ids))
        report.details["batches"] += 1


async def vacuum(db: Database, settings: Settings, clock: Clock, report: Report) -> None:
    """Reclaim space and refresh planner statistics.

    Neither `VACUUM` can run inside a transaction; `Database.execute` outside one runs in
    autocommit on both drivers (asyncpg, and aiosqlite opened with isolation_level=None).
    """
    report.details["bytes_before"] = await _database_bytes(db)
    if db.dialect == "postgresql":
        await db.execute("maintenance.vacuum", "VACUUM (ANALYZE)")
    else:
        await db.execute("maintenance.analyze", "ANALYZE")
        await db.execute("maintenance.vacuum", "VACUUM")
        await db.execute("maintenance.wal_checkpoint", "PRAGMA wal_checkpoint(TRUNCATE)")
    report.details["bytes_after"] = await _database_bytes(db)


async def _database_bytes(db: Database) -> int:
    if db.dialect == "postgresql":
        query = "SELECT pg_database_size(current_database())"
    else:
        query = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    return int(await db.fetch_val("maintenance.database_size", query))


async def mc_status_history(db: Database, settings: Settings, clock: Clock, report: Report) -> None:
    """Fold old game server polls into hourly rows, prune past the retention (docs/minecraft.md)."""
    from server.minecraft.history import fold_and_prune

    counts = await fold_and_prune(db, clock(), settings.mc_status_retention_days, settings.maintenance_batch_size)
    report.add("mc_status_samples", counts["mc_status_samples"])
    report.add("mc_status_hourly", counts["mc_status_pruned"])
    report.details["mc_hours_written"] = counts["mc_status_hourly"]


TASKS: Mapping[str, Task] = {"cleanup": cleanup, "archive": archive, "vacuum": vacuum,
                             "mc_status_history": mc_status_history}


# --- running, recording, measuring ------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    task: str
    status: str  # one of OUTCOMES
    counts: dict[str, int]
    seconds: float
    run_id: int | None


class MaintenanceMetrics:
    """The maintenance families; labels are task names and fixed outcomes only."""

    def __init__(self, metrics: Metrics) -> None:
        self.runs = metrics.counter(
            "vonix_maintenance_runs_total", "Maintenance runs by task and outcome.", ("task", "outcome"))
        self.skipped = metrics.counter(
            "vonix_maintenance_skipped_total",
            "Scheduled maintenance checks that did not run, by task and reason (locked, not_due).",
            ("task", "reason"))
        self.rows = metrics.counter(
            "vonix_maintenance_rows_total", "Rows deleted or archived by maintenance, by task.", ("task",))
        self.duration = metrics.histogram(
            "vonix_maintenance_duration_seconds", "Maintenance run duration by task.", ("task",),
            buckets=DURATION_BUCKETS)
        self.last_success = metrics.gauge(
            "vonix_maintenance_last_success_timestamp_seconds",
            "Unix time of the last successful maintenance run by task.", ("task",))
        for task in TASKS:  # every series exists from the start, so alerts see zeros
            for outcome in OUTCOMES:
                self.runs.labels(task, outcome)
            for reason in SKIP_REASONS:
                self.skipped.labels(task, reason)
            self.rows.labels(task)


class Maintenance:
    """Runs a task by name, records it in `maintenance_runs`, logs it and updates metrics."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        metrics: Metrics,
        *,
        instance: str | None = None,
        clock: Clock = utcnow,
        tasks: Mapping[str, Task] = TASKS,
    ) -> None:
        self.db = db
        self.settings = settings
        self.instance = instance or settings.instance_id
        self.clock = clock
        self.tasks = tasks
        self.metrics = MaintenanceMetrics(metrics)

    async def run(self, task: str) -> RunResult:
        """Run `task` now. Failures are recorded and returned; cancellation is recorded and raised."""
        function = self.tasks[task]
        report = Report()
        started = time.perf_counter()
        run_id: int | None = None
        status = "failed"
        try:
            run_id = await self._record_start(task)
            await function(self.db, self.settings, self.clock, report)
            status = "ok"
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        except Exception as exc:
            log.exception("maintenance_failed", task=task, run_id=run_id,
                          error=f"{exc.__class__.__name__}: {exc}")
        finally:
            result = RunResult(task, status, report.counts, time.perf_counter() - started, run_id)
            await self._finish(result, report)
        return result

    async def last_success(self, task: str) -> datetime | None:
        """When `task` last finished successfully on any replica (the shared schedule)."""
        query = (sa.select(maintenance_runs.c.finished_at)
                 .where(maintenance_runs.c.task == task, maintenance_runs.c.status == "ok")
                 .order_by(maintenance_runs.c.id.desc()).limit(1))
        return await self.db.fetch_val("maintenance.last_success", query)  # type: ignore[no-any-return]

    def skipped(self, task: str, reason: str) -> None:
        self.metrics.skipped.labels(task, reason).inc()
        log.info("maintenance_skipped", task=task, reason=reason, instance=self.instance)

    async def _record_start(self, task: str) -> int:
        statement = sa.insert(maintenance_runs).values(
            task=task, instance=self.instance[:64], started_at=self.clock(), status="running"
        ).returning(maintenance_runs.c.id)
        return int(await self.db.fetch_val("maintenance.run_start", statement))

    async def _finish(self, result: RunResult, report: Report) -> None:
        """Record the row before counting the run, so a counted run is always visible in the table."""
        try:
            if result.run_id is not None:  # None: the start was never recorded (database unreachable)
                await self._record_finish(result)
        finally:  # counted and logged even when shutdown cancels the write
            self._count(result, report)

    def _count(self, result: RunResult, report: Report) -> None:
        labels = result.task
        self.metrics.runs.labels(labels, result.status).inc()
        self.metrics.rows.labels(labels).inc(report.total_rows)
        self.metrics.duration.labels(labels).observe(result.seconds)
        if result.status == "ok":
            self.metrics.last_success.labels(labels).set(time.time())
        log.info(
            "maintenance_run",
            task=result.task,
            status=result.status,
            run_id=result.run_id,
            instance=self.instance,
            duration_ms=round(result.seconds * 1000, 1),
            rows=report.total_rows,
            # one string: the log redactor masks keys that look secret, such as "user_tokens"
            counts=" ".join(f"{name}={count}" for name, count in result.counts.items()),
        )

    async def _record_finish(self, result: RunResult) -> None:
        statement = sa.update(maintenance_runs).where(maintenance_runs.c.id == result.run_id).values(
            finished_at=self.clock(), status=result.status, counts=result.counts)
        try:
            # Bounded: when cancelled at shutdown this is the last write before disconnecting.
            await asyncio.wait_for(self.db.execute("maintenance.run_finish", statement),
                                   timeout=self.db.timeout)
        except Exception as exc:
            log.warning("maintenance_record_failed", task=result.task, run_id=result.run_id,
                        error=f"{exc.__class__.__name__}: {exc}")
