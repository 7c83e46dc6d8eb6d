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
    if settings.should_migrate_on_start:
        await asyncio.to_thread(migrate.upgrade, settings.database)
    await resources.db.connect()
    try:
        if resources.redis is not None:
            await resources.redis.start()
        if resources.broker is not None:
            await resources.broker.start()
        if resources.node is not None:
            await resources.node.start()
        await resources.health.readiness()
        resources.start_background(resources.monitor_health(), "health-monitor")
        if settings.maintenance_enabled and resources.maintenance is not None:
            resources.start_background(resources.maintenance.run(), "maintenance-scheduler")
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
        await resources.wait_spawned()
        if resources.broker is not None:
            await resources.broker.close()
        if resources.redis is not None:
            await resources.redis.close()
        await resources.db.disconnect()
        log.info("stopped", instance=settings.instance_id)
