"""L2 on Redis, and the pub/sub channel that keeps every replica's L1 coherent.

Layout under `vonix:cache:`: `k:<key>` the encoded entry (expires with its stale deadline),
`t:<tag>` the set of keys carrying a tag, `v:k:<key>` / `v:t:<tag>` the shared-clock millisecond
of the last invalidation (kept `VERSION_TTL` seconds). Three Lua scripts make each step atomic:
fetch (value + shared clock), store (refused when a key or tag was invalidated after the fetch) and
invalidate (delete the keys and the tags' members, stamp the versions).

Invalidations are published on `vonix:_sys:cache` and read by a dedicated pub/sub connection
(`RedisClients.subscriber`), so the realtime node never sees them. Each message carries this
cache's random origin id and a replica ignores its own. While the subscription is down the level is
not *coherent*: strict namespaces (principals) skip L1, everything else keeps serving L1. On every
(re)subscription the cache flushes its L1 (it may have missed invalidations) and replays the
invalidations it could not deliver, so it recovers by itself.

When Redis fails a call, the level is skipped for `RETRY_AFTER` seconds (and while the health ping
says Redis is down): no request waits on a dead Redis more than once per second.

Redis Cluster: an entry's tags link it to other entries with other tags (a session entry carries
`session:S` and `user:U`), so no partition of entries and tag sets keeps every store and
invalidation in one slot except one slot for the whole level: under cluster mode the prefix is
`vonix:{cache}:`, and the L2 lives on one shard (its load is what L1 misses, not every read). The
invalidate script then may not delete keys it read from a tag set (undeclared keys):
`INVALIDATE_DECLARED` takes the members as KEYS and, when a set holds a member it was not given (a
store came between), changes nothing and names the missing ones; the call is repeated with them.
A single Redis keeps the original names and scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError, ResponseError

from server.cache.backend import Fetched, Invalidation
from server.infra.redis import UNAVAILABLE, RedisClients
from server.observability.logging import get_logger

log = get_logger("vonix.cache")

CHANNEL = "vonix:_sys:cache"
PREFIX = "vonix:cache:"
CLUSTER_PREFIX = "vonix:{cache}:"  # one hash tag: the whole level in one cluster slot
DECLARE_ROUNDS = 5  # invalidation attempts while stores keep adding members to the tag sets
RETRY_AFTER = 1.0
VERSION_TTL = 600.0
MAX_PENDING = 1000

FETCH = """
local value = redis.call('GET', KEYS[1])
local now = redis.call('TIME')
return {value, tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)}
"""

STORE = """
local token = tonumber(ARGV[1])
local versions = tonumber(ARGV[4])
for i = 2, versions + 1 do
  local stamp = redis.call('GET', KEYS[i])
  if stamp and tonumber(stamp) >= token then return 0 end
end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
for i = versions + 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"""

INVALIDATE = """
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local removed = 0
for i = 1, n do
  removed = removed + redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[n + i], now, 'PX', ARGV[3])
end
for j = 1, m do
  local set = KEYS[2 * n + j]
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    removed = removed + redis.call('DEL', member)
  end
  redis.call('DEL', set)
  redis.call('SET', KEYS[2 * n + m + j], now, 'PX', ARGV[3])
end
return removed
"""

# Cluster: KEYS as INVALIDATE, then the tag sets' members as the caller last read them. ARGV: n, m,
# version ttl ms. -> {1, removed} done; {0, {member...}} nothing changed, members not declared.
INVALIDATE_DECLARED = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local first = 2 * n + 2 * m
local declared = {}
for i = first + 1, #KEYS do declared[KEYS[i]] = true end
local missing = {}
for j = 1, m do
  for _, member in ipairs(redis.call('SMEMBERS', KEYS[2 * n + j])) do
    if not declared[member] then missing[#missing + 1] = member end
  end
end
if #missing > 0 then return {0, missing} end
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local removed = 0
for i = 1, n do
  removed = removed + redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[n + i], now, 'PX', ARGV[3])
end
for i = first + 1, #KEYS do
  removed = removed + redis.call('DEL', KEYS[i])
end
for j = 1, m do
  redis.call('DEL', KEYS[2 * n + j])
  redis.call('SET', KEYS[2 * n + m + j], now, 'PX', ARGV[3])
end
return {1, removed}
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisShared:
    name = "redis"

    def __init__(self, redis: RedisClients, *, prefix: str | None = None, channel: str = CHANNEL,
                 metrics: Any = None) -> None:
        self.redis = redis
        self.cluster = bool(getattr(redis, "cluster", False))
        self.prefix = _checked_prefix(prefix or (CLUSTER_PREFIX if self.cluster else PREFIX), self.cluster)
        self.channel = channel
        self.origin = uuid.uuid4().hex  # per cache object: two replicas may share one instance id in tests
        self._fetch = redis.commands.register_script(FETCH)
        self._store = redis.commands.register_script(STORE)
        self._invalidate = redis.commands.register_script(INVALIDATE_DECLARED if self.cluster else INVALIDATE)
        self._subscribed = False
        self._suspect = False  # the health ping failed while subscribed: resubscribe once it is back
        self._down_until = 0.0
        self._pending: list[Invalidation] = []
        self._on_remote: Callable[[Invalidation], None] = lambda _: None
        self._on_resync: Callable[[], None] = lambda: None
        self._listener: asyncio.Task[None] | None = None
        self._errors = metrics.counter("vonix_cache_shared_errors_total",
                                       "Redis cache operations that failed (the cache went on with L1).",
                                       ("op",)) if metrics is not None else None

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def coherent(self) -> bool:
        return self._subscribed and self.redis.healthy and not self._suspect

    async def start(self, on_remote: Callable[[Invalidation], None], on_resync: Callable[[], None]) -> None:
        self._on_remote, self._on_resync = on_remote, on_resync
        self._listener = asyncio.create_task(self._listen(), name="cache-invalidations")
        for _ in range(100):  # up to a second for the first subscription; the cache works without it
            if self._subscribed or self._listener.done():
                break
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._listener, timeout=2.0)

    def status(self) -> dict[str, Any]:
        return {"level": "redis", "coherent": self.coherent, "subscribed": self._subscribed,
                "redis_healthy": self.redis.healthy, "pending_invalidations": len(self._pending)}

    # --- reads and writes --------------------------------------------------------------------
    def _available(self) -> bool:
        return self.redis.healthy and time.monotonic() >= self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("cache_redis_failed", op=op, error=exc.__class__.__name__)
        self._down_until = time.monotonic() + RETRY_AFTER
        if self._errors is not None:
            self._errors.labels(op).inc()

    async def fetch(self, key: str) -> Fetched:
        if not self._available():
            return Fetched(None, None)
        try:
            payload, token = await self._fetch(keys=[self.prefix + "k:" + key])
        except UNAVAILABLE as exc:
            self._failed("fetch", exc)
            return Fetched(None, None)
        return Fetched(payload, int(token))

    async def store(self, key: str, payload: bytes, ttl: float, tags: Sequence[str], token: int | None) -> bool | None:
        if token is None or not self._available():
            return None
        p = self.prefix
        keys = [p + "k:" + key, p + "v:k:" + key, *(p + "v:t:" + t for t in tags), *(p + "t:" + t for t in tags)]
        try:
            stored = await self._store(keys=keys, args=[token, payload, max(1, int(ttl * 1000)), 1 + len(tags)])
        except UNAVAILABLE as exc:
            self._failed("store", exc)
            return None
        return bool(stored)

    async def invalidate(self, invalidation: Invalidation) -> None:
        if not self._available():
            self._queue(invalidation)
            return
        try:
            await self._apply(invalidation)
            await self.redis.publisher.publish(self.channel, invalidation.encode(self.origin))
        except UNAVAILABLE as exc:
            self._failed("invalidate", exc)
            self._queue(invalidation)

    async def _apply(self, invalidation: Invalidation) -> None:
        p = self.prefix
        keys, tags = invalidation.keys, invalidation.tags
        if keys or tags:
            names = [*(p + "k:" + k for k in keys), *(p + "v:k:" + k for k in keys),
                     *(p + "t:" + t for t in tags), *(p + "v:t:" + t for t in tags)]
            args = [len(keys), len(tags), int(VERSION_TTL * 1000)]
            if self.cluster:
                await self._invalidate_declared(names, args)
            else:
                await self._invalidate(keys=names, args=args)
        for prefix in invalidation.prefixes:
            pattern = p + "k:" + _glob_escape(prefix) + "*"
            async for batch in self._scan(pattern):
                await self.redis.commands.unlink(*batch)

    async def _invalidate_declared(self, names: list[str], args: list[int]) -> None:
        """Cluster: repeat the script with the members it reports until it finds none undeclared
        (a tag whose set holds entries takes two calls: the first only reads the sets)."""
        members: list[bytes] = []
        for _ in range(DECLARE_ROUNDS):
            done, found = await self._invalidate(keys=[*names, *members], args=args)
            if done:
                return
            members += found
        raise ResponseError(f"cache tag sets kept gaining members for {DECLARE_ROUNDS} rounds")

    async def _scan(self, pattern: str) -> Any:
        if self.cluster:  # one SCAN per primary, each to its end (redis-py keeps the cursors)
            batch: list[Any] = []
            async for name in self.redis.commands.scan_iter(match=pattern, count=500):
                batch.append(name)
                if len(batch) >= 500:
                    yield batch
                    batch = []
            if batch:
                yield batch
            return
        cursor = 0
        while True:
            cursor, found = await self.redis.commands.scan(cursor, match=pattern, count=500)
            if found:
                yield found
            if not cursor:
                return

    def _queue(self, invalidation: Invalidation) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending = [Invalidation(prefixes=("",))]  # too many to replay one by one: drop everything
        else:
            self._pending.append(invalidation)

    async def _replay(self) -> None:
        pending, self._pending = self._pending, []
        for number, invalidation in enumerate(pending):
            try:
                await self._apply(invalidation)
                await self.redis.publisher.publish(self.channel, invalidation.encode(self.origin))
            except UNAVAILABLE as exc:
                self._failed("replay", exc)
                self._pending = pending[number:] + self._pending
                return
        if pending:
            log.info("cache_invalidations_replayed", count=len(pending))

    # --- the invalidation listener -----------------------------------------------------------
    async def _listen(self) -> None:
        delay = 0.05
        while True:
            pubsub = self.redis.subscriber.pubsub(ignore_subscribe_messages=False)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    if not self.redis.healthy and self._subscribed:
                        self._suspect = True
                    elif self._suspect and self.redis.healthy:
                        self._suspect = False
                        raise _Resubscribe
                    message = await pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._subscribed = True
                        self._down_until = 0.0  # Redis answers again: stop skipping it
                        delay = 0.05
                        self._on_resync()
                        await self._replay()
                    elif message["type"] == "message":
                        origin, invalidation = Invalidation.decode(message["data"])
                        if origin != self.origin:
                            self._on_remote(invalidation)
            except asyncio.CancelledError:
                raise
            except _Resubscribe:
                log.info("cache_resubscribing")
            except (RedisError, OSError) as exc:
                if self._subscribed:
                    log.warning("cache_invalidations_down", error=exc.__class__.__name__)
            except Exception:
                log.exception("cache_listener_failed")
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):  # bounded: a close must never hang the listener
                    await asyncio.wait_for(pubsub.aclose(), timeout=1.0)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def _checked_prefix(prefix: str, cluster: bool) -> str:
    """On a cluster every key of the level must carry the prefix's one hash tag."""
    if cluster and (prefix.count("{") != 1 or prefix.count("}") != 1 or prefix.index("{") > prefix.index("}") - 2):
        raise ValueError(f"cache prefix {prefix!r} needs exactly one non-empty hash tag on Redis Cluster")
    return prefix


class _Resubscribe(Exception):
    """Redis was unreachable while we were subscribed: start over so nothing missed goes unseen."""
