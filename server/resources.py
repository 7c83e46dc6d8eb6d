"""Everything the app holds for its lifetime, built unconnected by the factory and opened by the
lifespan. Handlers reach it through `resources_of(request)`; there are no module-level clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from server.db.database import Database
from server.infra.locks import Lock, make_lock
from server.infra.redis import RedisClients
from server.observability.logging import get_logger
from server.observability.metrics import Metrics
from server.ops.health import HealthChecks
from server.ops.lifecycle import Lifecycle
from server.ops.maintenance import Maintenance
from server.ops.scheduler import MaintenanceScheduler
from server.settings import Settings

log = get_logger("vonix.resources")


@dataclass
class Resources:
    settings: Settings
    metrics: Metrics
    db: Database
    redis: RedisClients | None
    lifecycle: Lifecycle
    health: HealthChecks
    background: list[asyncio.Task[None]] = field(default_factory=list)
    locks: Lock | None = None
    maintenance: MaintenanceScheduler | None = None

    @classmethod
    def build(cls, settings: Settings) -> Resources:
        metrics = Metrics()
        db = Database(
            settings.database,
            metrics,
            pool_min=settings.db_pool_min,
            pool_max=settings.db_pool_max,
            timeout=settings.db_timeout,
            slow_query_seconds=settings.slow_query_ms / 1000,
        )
        redis = None
        if settings.redis_url:
            redis = RedisClients(
                settings.redis_url,
                metrics,
                timeout=settings.redis_timeout,
                health_interval=settings.redis_health_interval,
                pool_size=settings.redis_pool_size,
            )
        lifecycle = Lifecycle()
        health = HealthChecks(db, redis, lifecycle)
        locks = make_lock(redis)
        maintenance = MaintenanceScheduler.from_settings(Maintenance(db, settings, metrics), locks, settings)
        resources = cls(settings, metrics, db, redis, lifecycle, health, locks=locks, maintenance=maintenance)
        resources._component_up = metrics.gauge(
            "vonix_component_up", "1 when a component passed its last readiness check.", ("component",)
        )
        return resources

    def start_background(self, coroutine: object, name: str) -> None:
        self.background.append(asyncio.create_task(coroutine, name=name))  # type: ignore[arg-type]

    async def stop_background(self) -> None:
        tasks, self.background = self.background, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def monitor_health(self, interval: float = 10.0) -> None:
        """Keep liveness' view and the component gauges fresh between readiness probes."""
        while True:
            try:
                await self.health.readiness()
            except Exception:
                log.exception("health_monitor_failed")
            self.refresh_gauges()
            await asyncio.sleep(interval)

    def refresh_gauges(self) -> None:
        for name, status in self.health.last.items():
            self._component_up.labels(name).set(1 if status.status in ("ok", "disabled") else 0)
        self.db.pool_state()


def resources_of(connection: HTTPConnection) -> Resources:
    return connection.app.state.vonix  # type: ignore[no-any-return]
