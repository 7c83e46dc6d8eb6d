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

Redis Cluster (`cluster=True`, `REDIS_CLUSTER`): *commands* and *publisher* are
`RedisCluster` clients built from the same URL (any node; the others are discovered and MOVED/ASK
are followed), with the same timeouts and retry; a command's keys pick its node, so every
multi-key operation of the components keeps its keys in one hash slot (each component's
docstring says how). *subscriber* stays a plain client of the URL's node: the sharded broker
opens its own per-shard connections from its settings, the cache listener's classic SUBSCRIBE
hears every node's PUBLISH. The health ping asks every primary: a shard without its master cannot
serve its slots, so the store is not healthy until a replica took over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import MaxConnectionsError, RedisClusterUnreachableError, RedisError, SlotNotCoveredError

from server.observability.logging import get_logger
from server.observability.metrics import Metrics

log = get_logger("vonix.redis")

# What "Redis cannot answer now" looks like on either kind of client. The cluster client raises
# two outage errors outside `RedisError` (no node reachable, a slot without a master); catching
# them lets a component degrade exactly as on a single Redis. Other `RedisClusterException`s
# (keys of one command in several slots) are bugs and must stay loud.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisError, OSError, TimeoutError, RedisClusterUnreachableError, SlotNotCoveredError)

# A client of either kind: both speak the same command API to the components.
Client = aioredis.Redis | RedisCluster


def reject_braces(prefix: str) -> str:
    """A key prefix must not carry `{` or `}`: Redis Cluster hashes a key by its first `{...}`,
    so a brace in the prefix would replace the hash tags the components put after it (and with
    them the one-slot guarantee of every multi-key script)."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"Redis key prefix {prefix!r} must not contain '{{' or '}}' (Redis Cluster hash tags)")
    return prefix


class QueueingRedisCluster(RedisCluster):
    """A cluster client whose callers wait for a connection instead of failing.

    redis-py's cluster pools do not queue: past `max_connections` to one node a call raises
    MaxConnectionsError at once. 100 members subscribing at the same moment on one replica made
    8-11% of their subscribes fail "unavailable" (`bench/bench_cluster.py`). Every command and
    pipeline here first takes one of `max_connections` permits; a call or a pipeline holds at most
    one connection per node, so no node's pool is ever exhausted and a burst queues (up to
    `queue_timeout`, then MaxConnectionsError, which the components treat as an outage).
    """

    def __init__(self, *args: object, queue_timeout: float = 5.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.queue_timeout = queue_timeout
        self.in_flight = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))  # type: ignore[call-overload]

    @contextlib.asynccontextmanager
    async def permit(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self.in_flight.acquire(), self.queue_timeout)
        except TimeoutError:
            raise MaxConnectionsError(f"no Redis connection free within {self.queue_timeout:g} s") from None
        try:
            yield
        finally:
            self.in_flight.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.permit():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused by redis-py, as it should be
        return QueueingPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py builds its own


class QueueingPipeline(ClusterPipeline):
    """A pipeline of `QueueingRedisCluster`: one permit for the whole batch."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        client = self.cluster_client
        assert isinstance(client, QueueingRedisCluster)
        async with client.permit():
            return await super().execute(raise_on_error, allow_redirections)


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
        cluster: bool = False,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.health_interval = health_interval
        self.cluster = cluster
        self.commands: Client
        self.publisher: Client
        if cluster:
            self.commands = self._cluster_client(url, pool_size, timeout, "commands")
            self.publisher = self._cluster_client(url, max(4, pool_size // 4), timeout, "publisher")
        else:
            self.commands = self._client(url, pool_size, timeout, "commands")
            self.publisher = self._client(url, max(4, pool_size // 4), timeout, "publisher")
        # The subscriber blocks on reads for as long as no message arrives: no read timeout.
        self.subscriber = self._client(url, 4, None, "subscriber")
        self.healthy = False
        self.last_error: str | None = None
        self.last_ping_seconds: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
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

    @staticmethod
    def _cluster_client(url: str, size: int, timeout: float, name: str) -> RedisCluster:
        """The cluster twin of `_client`: `size` calls in flight at most, a caller past them waits
        up to the pool timeout (5 s) for one to finish, as on the single-Redis BlockingConnectionPool."""
        return QueueingRedisCluster.from_url(
            url,
            max_connections=size,
            queue_timeout=5.0,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            client_name=f"vonix-{name}",
            # One retry, as on a single Redis; on a connection error the client also refreshes
            # the slot map first, so the retry reaches a promoted replica.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._health_loop(), name="redis-health")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            # Bounded: on Python 3.11 a cancel that lands as the health ping's `wait_for` completes
            # is lost (the loop goes on), and an unbounded await here then never returned.
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=2.0)
        for client in (self.commands, self.publisher, self.subscriber):
            # Bounded: a connection stuck after an outage must not hold up a shutdown.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=2.0)
            if isinstance(client, aioredis.Redis):  # a cluster client's aclose closes every node
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.connection_pool.disconnect(), timeout=2.0)

    async def check(self) -> bool:
        """Ping once now; update health, metric and log a line on each change."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._ping_all(), timeout=self.timeout)
        except UNAVAILABLE as exc:
            self._set(False, f"{exc.__class__.__name__}: {exc}".strip(": "))
            return False
        self.last_ping_seconds = time.perf_counter() - started
        self._ping.observe(self.last_ping_seconds)
        self._set(True, None)
        return True

    async def _ping_all(self) -> None:
        if isinstance(self.commands, RedisCluster):
            # Primaries only: a lost replica serves no slot, a lost master stops its slots.
            await self.commands.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            await self.commands.ping()

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
        while not self._closing:
            await asyncio.sleep(self.health_interval)
            if not self._closing:
                await self.check()


def _safe(url: str) -> str:
    from server.observability.logging import _scrub

    return str(_scrub(url))
