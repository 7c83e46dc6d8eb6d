"""The pure parts of maintenance: settings, the archive table's shape, and the scheduler's
decisions (run, wait, retry) against a stand-in for the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.db.tables import messages, messages_archive
from server.infra.locks import MemoryLock
from server.ops.maintenance import ARCHIVED_COLUMNS, TASKS, Report, RunResult
from server.ops.scheduler import MaintenanceScheduler, Schedule, schedules_from
from server.settings import ConfigError, load_settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_maintenance_defaults() -> None:
    s = load_settings(_env_file=None)
    assert s.maintenance_enabled
    assert s.maintenance_cleanup_interval == 86400
    assert (s.maintenance_archive_interval, s.maintenance_vacuum_interval) == (3600, 604800)
    assert (s.maintenance_batch_size, s.archive_after_days, s.maintenance_first_delay) == (1000, 90, 120)
    assert [(x.task, x.interval) for x in schedules_from(s)] == [
        ("cleanup", 86400), ("archive", 3600), ("vacuum", 604800),
        ("mc_status_history", 3600)]
    assert set(TASKS) == {"cleanup", "archive", "vacuum", "mc_status_history"}


@pytest.mark.parametrize(("variable", "value"), [
    ("MAINTENANCE_BATCH_SIZE", "0"), ("MAINTENANCE_BATCH_SIZE", "50000"), ("ARCHIVE_AFTER_DAYS", "0"),
    ("MAINTENANCE_ARCHIVE_INTERVAL", "0"), ("MAINTENANCE_ENABLED", "perhaps"),
])
def test_invalid_maintenance_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(_env_file=None, **{variable: value})


def test_archive_table_keeps_every_message_column_with_the_same_type() -> None:
    """INSERT ... SELECT copies by name: a message column missing from the archive would be lost."""
    assert ARCHIVED_COLUMNS == tuple(column.name for column in messages.c)
    for name in ARCHIVED_COLUMNS:
        assert repr(messages_archive.c[name].type) == repr(messages.c[name].type), name
    assert [c.name for c in messages_archive.c] == [*ARCHIVED_COLUMNS, "archived_at"]


def test_report_counts_rows_and_details() -> None:
    report = Report()
    report.add("messages", 1000)
    report.add("messages", 500)
    report.details["batches"] = 2
    assert report.total_rows == 1500
    assert report.counts == {"messages": 1500, "batches": 2}


class StubMaintenance:
    """Stands in for `Maintenance`: a clock, a last success, and scripted run outcomes."""

    def __init__(self, last: datetime | None = None, status: str = "ok") -> None:
        self.now = NOW
        self.last: dict[str, datetime | None] = {task: last for task in TASKS}
        self.status = status
        self.ran: list[str] = []
        self.skips: list[tuple[str, str]] = []

    def clock(self) -> datetime:
        return self.now

    async def last_success(self, task: str) -> datetime | None:
        return self.last[task]

    async def run(self, task: str) -> RunResult:
        self.ran.append(task)
        if self.status == "ok":
            self.last[task] = self.now
        return RunResult(task, self.status, {}, 0.0, 1)

    def skipped(self, task: str, reason: str) -> None:
        self.skips.append((task, reason))


def _scheduler(stub: StubMaintenance, **kwargs: Any) -> MaintenanceScheduler:
    return MaintenanceScheduler(stub, MemoryLock(), (Schedule("cleanup", 3600),), first_delay=0,  # type: ignore[arg-type]
                                **kwargs)


async def test_first_run_happens_and_schedules_the_next_interval() -> None:
    stub = StubMaintenance()
    assert await _scheduler(stub).tick(Schedule("cleanup", 3600)) == 3600
    assert stub.ran == ["cleanup"]


async def test_not_due_waits_for_the_rest_of_the_interval() -> None:
    stub = StubMaintenance(last=NOW - timedelta(minutes=45))
    assert await _scheduler(stub).tick(Schedule("cleanup", 3600)) == pytest.approx(900)
    assert stub.ran == []
    assert stub.skips == [("cleanup", "not_due")]


async def test_overdue_runs_at_once() -> None:
    stub = StubMaintenance(last=NOW - timedelta(days=3))
    await _scheduler(stub).tick(Schedule("cleanup", 3600))
    assert stub.ran == ["cleanup"]


async def test_failure_retries_sooner_than_the_interval() -> None:
    stub = StubMaintenance(status="failed")
    assert await _scheduler(stub, failure_retry=120).tick(Schedule("cleanup", 86400)) == 120
    assert await _scheduler(stub, failure_retry=120).tick(Schedule("cleanup", 60)) == 60


async def test_locked_elsewhere_looks_again_soon() -> None:
    stub = StubMaintenance()
    scheduler = _scheduler(stub, busy_retry=30)
    assert await scheduler.lock.acquire("maintenance:cleanup", 60) is not None
    assert await scheduler.tick(Schedule("cleanup", 86400)) == 30
    assert stub.ran == []
    assert stub.skips == [("cleanup", "locked")]


async def test_the_lock_is_released_after_a_check() -> None:
    stub = StubMaintenance()
    scheduler = _scheduler(stub)
    await scheduler.tick(Schedule("cleanup", 3600))
    assert await scheduler.lock.acquire("maintenance:cleanup", 60) is not None


async def test_run_loop_checks_every_task_and_stops_when_cancelled() -> None:
    stub = StubMaintenance()
    schedules = (Schedule("cleanup", 3600), Schedule("archive", 3600), Schedule("vacuum", 3600))
    scheduler = MaintenanceScheduler(stub, MemoryLock(), schedules, first_delay=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(scheduler.run())
    for _ in range(100):
        if len(stub.ran) == 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(stub.ran) == ["archive", "cleanup", "vacuum"]
