"""Runs maintenance on a schedule inside the server, on one replica at a time.

Each task has an interval. A check takes the lock `maintenance:<task>` (Redis when configured, so
replicas exclude each other), then, *inside* the lock, reads when the task last succeeded on any
replica from `maintenance_runs` and runs it only if the interval has passed. The lock makes runs
exclusive; the shared record makes the schedule survive restarts, deploys and extra replicas (a
replica that starts an hour after a daily run does not run it again). The first check waits a
random part of `MAINTENANCE_FIRST_DELAY` so replicas starting together do not all check at once
and a fresh deploy does not start heavy work while it is still warming up.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from server.infra.locks import Lock, held
from server.observability.logging import get_logger
from server.ops.maintenance import Maintenance, RunResult
from server.settings import Settings

log = get_logger("vonix.scheduler")

LOCK_TTL = 300.0  # seconds; the holder extends it every third, so it only bounds a crashed holder
BUSY_RETRY = 60.0  # another replica holds the lock (or Redis is down): look again soon
FAILURE_RETRY = 600.0  # a run failed: retry well before its next interval, without hammering
MC_STATUS_HISTORY_INTERVAL = 3600.0  # game server status history: fold and prune hourly


@dataclass(frozen=True)
class Schedule:
    task: str
    interval: float  # seconds between successful runs


def schedules_from(settings: Settings) -> tuple[Schedule, ...]:
    return (
        Schedule("cleanup", settings.maintenance_cleanup_interval),
        Schedule("archive", settings.maintenance_archive_interval),
        Schedule("vacuum", settings.maintenance_vacuum_interval),
        Schedule("mc_status_history", MC_STATUS_HISTORY_INTERVAL),
    )


async def run_locked(
    maintenance: Maintenance, lock: Lock, task: str, ttl: float = LOCK_TTL
) -> RunResult | None:
    """Run `task` now while holding its lock; None when another holder has it (or no lock store)."""
    async with held(lock, f"maintenance:{task}", ttl) as acquired:
        if not acquired:
            return None
        return await maintenance.run(task)


class MaintenanceScheduler:
    """One loop per task, started by the lifespan and cancelled at shutdown."""

    def __init__(
        self,
        maintenance: Maintenance,
        lock: Lock,
        schedules: tuple[Schedule, ...],
        *,
        first_delay: float,
        lock_ttl: float = LOCK_TTL,
        busy_retry: float = BUSY_RETRY,
        failure_retry: float = FAILURE_RETRY,
    ) -> None:
        self.maintenance = maintenance
        self.lock = lock
        self.schedules = schedules
        self.first_delay = first_delay
        self.lock_ttl = lock_ttl
        self.busy_retry = busy_retry
        self.failure_retry = failure_retry

    @classmethod
    def from_settings(cls, maintenance: Maintenance, lock: Lock, settings: Settings) -> MaintenanceScheduler:
        return cls(maintenance, lock, schedules_from(settings), first_delay=settings.maintenance_first_delay)

    async def run(self) -> None:
        """Check every task forever; cancelling this cancels (and records) any run in progress."""
        async with asyncio.TaskGroup() as group:
            for schedule in self.schedules:
                group.create_task(self._loop(schedule), name=f"maintenance:{schedule.task}")

    async def _loop(self, schedule: Schedule) -> None:
        await asyncio.sleep(random.uniform(self.first_delay / 2, self.first_delay))
        while True:
            try:
                delay = await self.tick(schedule)
            except Exception as exc:  # e.g. the database is down: keep the loop, try later
                log.warning("maintenance_check_failed", task=schedule.task,
                            error=f"{exc.__class__.__name__}: {exc}")
                delay = min(schedule.interval, self.failure_retry)
            await asyncio.sleep(delay)

    async def tick(self, schedule: Schedule) -> float:
        """Check `schedule` once (run it if due); returns the seconds until the next check."""
        task = schedule.task
        async with held(self.lock, f"maintenance:{task}", self.lock_ttl) as acquired:
            if not acquired:
                self.maintenance.skipped(task, "locked")
                return min(schedule.interval, self.busy_retry)
            last = await self.maintenance.last_success(task)
            if last is not None:
                remaining = (last - self.maintenance.clock()).total_seconds() + schedule.interval
                if remaining > 0:
                    self.maintenance.skipped(task, "not_due")
                    return remaining
            result = await self.maintenance.run(task)
        if result.status == "ok":
            return schedule.interval
        return min(schedule.interval, self.failure_retry)
