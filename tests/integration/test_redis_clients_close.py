"""Closing the Redis clients is bounded, even when the health loop misses its cancellation.

On Python 3.11 a cancel that lands just as `asyncio.wait_for` completes is lost: the health loop
went on and `close()` awaited it for ever (a test teardown hit pytest's 120 s timeout after a
cluster failover). A real Redis; the health check is made to swallow one cancellation.
"""

from __future__ import annotations

import asyncio
import time

from server.infra.redis import RedisClients
from server.observability.metrics import Metrics
from tests.support.services import RedisServer


async def test_close_returns_and_the_health_loop_stops_though_a_cancel_was_lost(
        redis_service: RedisServer) -> None:
    redis = RedisClients(redis_service.url, Metrics(), timeout=0.5)
    redis.health_interval = 0.05
    checks = 0
    real_check = redis.check

    async def check_losing_a_cancel() -> bool:
        nonlocal checks
        checks += 1
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:  # what wait_for's race does: the cancel is gone
            pass
        return await real_check()

    redis.check = check_losing_a_cancel  # type: ignore[method-assign]
    await redis.start()
    await asyncio.sleep(0.15)  # the loop is inside a check now
    started = time.monotonic()
    await asyncio.wait_for(redis.close(), 10)
    assert time.monotonic() - started < 5
    seen = checks
    await asyncio.sleep(0.5)
    assert checks == seen, "the health loop kept checking after close"
