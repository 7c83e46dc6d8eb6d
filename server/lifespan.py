"""Open every resource at start, close every one at stop, in reverse order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from server.db import migrate
from server.observability.logging import get_logger
from server.resources import Resources

log = get_logger("vonix.lifespan")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    resources: Resources = app.state.vonix
    settings = resources.settings
    resources.metrics.watch_loop(asyncio.get_running_loop())
    if settings.should_migrate_on_start:
        await asyncio.to_thread(migrate.upgrade, settings.database)
    if resources.tracing is not None:
        resources.tracing.start()
    await resources.db.connect()
    try:
        if resources.redis is not None:
            await resources.redis.start()
        if resources.broker is not None:
            await resources.broker.start()
        if resources.cache is not None:
            await resources.cache.start()
            await resources.cache.preload(settings.cache_preload_keys)
        if resources.node is not None:
            await resources.node.start()
        await resources.health.readiness()
        resources.start_background(resources.monitor_health(), "health-monitor")
        if resources.alerter is not None and resources.errors is not None:
            resources.start_background(resources.alerter.run(resources.errors, resources.health), "alerts")
        if resources.stats is not None:
            resources.start_background(resources.stats.run(), "replica-heartbeat")
        if settings.maintenance_enabled and resources.maintenance is not None:
            resources.start_background(resources.maintenance.run(), "maintenance-scheduler")
        if resources.groups is not None:  # every replica runs it: a conditional UPDATE picks who sends
            resources.start_background(resources.groups.reminders.run(), "event-reminders")
        if resources.mc_status is not None:  # every replica runs it: a lock picks the one that polls
            resources.start_background(resources.mc_status.run(), "mc-status-poller")
        log.info(
            "started",
            instance=settings.instance_id,
            env=settings.env.value,
            database=settings.database.dialect,
            redis=resources.redis is not None,
        )
        yield
    finally:
        resources.lifecycle.start_draining()
        if resources.node is not None:
            await resources.node.stop()
        await resources.stop_background()
        if resources.people is not None:
            resources.people.presence.hurry()  # friends hear now, not after the grace
        await resources.wait_spawned()
        if resources.alerter is not None:
            await resources.alerter.close()
        if resources.broker is not None:
            await resources.broker.close()
        if resources.cache is not None:
            await resources.cache.close()
        if resources.redis is not None:
            await resources.redis.close()
        await resources.db.disconnect()
        if resources.tracing is not None:
            resources.tracing.shutdown()
        log.info("stopped", instance=settings.instance_id)
