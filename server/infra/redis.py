"""Redis connections, managed in one place.

Three clients with a pool each: *commands* (cache, rate limits, locks), *publisher* (fan-out
publishes) and *subscriber* (the long-lived pub/sub connection). Keeping them apart means a slow
pipeline of cache writes cannot delay a publish, and the blocking subscriber connection never
takes a slot from the command pool.

When Redis is unreachable: every call has a short socket timeout (`REDIS_TIMEOUT`), so no request
hangs; a background ping every `REDIS_HEALTH_INTERVAL` seconds keeps `healthy` current and exports
it as `vonix_redis_up`. Components read `healthy` to degrade to local-only behaviour where that is
safe (the cache serves L1, the broker delivers on this replica only) and fail closed where it is
not (authentication rate limits). The pools reconnect by themselves once Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from server.observability.logging import get_logger
from server.observability.metrics import Metrics

log = get_logger("vonix.redis")


class RedisClients:
    """Owns the three Redis pools and the health ping."""

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        timeout: float = 1.0,
        health_interval: float = 5.0,
        pool_size: int = 50,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.health_interval = health_interval
        self.commands = self._client(url, pool_size, timeout, "commands")
        self.publisher = self._client(url, max(4, pool_size // 4), timeout, "publisher")
        # The subscriber blocks on reads for as long as no message arrives: no read timeout.
        self.subscriber = self._client(url, 4, None, "subscriber")
        self.healthy = False
        self.last_error: str | None = None
        self.last_ping_seconds: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = metrics.gauge("vonix_redis_up", "1 when the last Redis health ping succeeded.")
        self._ping = metrics.histogram(
            "vonix_redis_ping_seconds", "Redis health ping round trip.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self._transitions = metrics.counter(
            "vonix_redis_health_transitions_total", "Redis health changes, by new state.", ("state",)
        )

    @staticmethod
    def _client(url: str, size: int, timeout: float | None, name: str) -> aioredis.Redis:
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=size,
            timeout=timeout or 5.0,
            socket_timeout=timeout,
            socket_connect_timeout=timeout or 1.0,
            health_check_interval=30,
            client_name=f"vonix-{name}",
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )
        return aioredis.Redis(connection_pool=pool)

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._health_loop(), name="redis-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self.commands, self.publisher, self.subscriber):
            # Bounded: a connection stuck after an outage must not hold up a shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=2.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.connection_pool.disconnect(), timeout=2.0)

    async def check(self) -> bool:
        """Ping once now; update health, metric and log a line on each change."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self.commands.ping(), timeout=self.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self._set(False, f"{exc.__class__.__name__}: {exc}".strip(": "))
            return False
        self.last_ping_seconds = time.perf_counter() - started
        self._ping.observe(self.last_ping_seconds)
        self._set(True, None)
        return True

    def _set(self, healthy: bool, error: str | None) -> None:
        if healthy != self.healthy:
            self._transitions.labels("up" if healthy else "down").inc()
            if healthy:
                log.info("redis_up", url=_safe(self.url))
            else:
                log.warning("redis_down", url=_safe(self.url), error=error)
        self.healthy = healthy
        self.last_error = error
        self._up.set(1 if healthy else 0)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval)
            await self.check()


def _safe(url: str) -> str:
    from server.observability.logging import _scrub

    return str(_scrub(url))
