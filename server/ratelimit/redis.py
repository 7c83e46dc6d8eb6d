"""Limits counted in Redis: one atomic Lua script per algorithm, shared by every replica.

Both scripts read the clock from Redis (`TIME`), so replicas with skewed clocks agree, keep their
state in one hash per key (expiring when idle) and return allowed, remaining, reset and retry in
one round trip. The same call counts the decision for the admin analytics (a hash of counts per
rule and a sorted set of limited keys per five-minute bucket, kept an hour).

When Redis is unreachable (the health ping says so, or a call just failed: then Redis is skipped
for a second), a rule with `fail_open` counts on this replica's `MemoryLimiter` (each replica then
allows the limit on its own); a rule without it refuses with a one-second `Retry-After`.

Redis Cluster: a script's three keys must share a slot, but the analytics keys are shared by every
limited key. So in cluster mode the counts are split into `CLUSTER_PARTITIONS` partitions, each
with its own analytics keys, and a limited key's state lives in its partition's slot (hash tag
`{rl.<n>}`, n from a CRC of rule and key): `vonix:rl:{rl.7}:<rule>|<key>`, `vonix:rl:{rl.7}:stats:<bucket>`,
`vonix:rl:{rl.7}:top:<bucket>`. The partitions spread the limits over the shards; the admin snapshot
reads them all. A single Redis keeps the original key names (one partition, no tag).
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from typing import Any

from server.infra.redis import UNAVAILABLE, RedisClients, reject_braces
from server.observability.logging import get_logger
from server.ratelimit.analytics import BUCKET_SECONDS, BUCKETS, LocalAnalytics
from server.ratelimit.memory import Decision, MemoryLimiter
from server.ratelimit.rules import Rule

log = get_logger("vonix.ratelimit")
RETRY_AFTER = 1.0
CLUSTER_PARTITIONS = 16

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

_ANALYTICS = """
if allowed == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[4] .. '|allowed', 1)
else
  redis.call('HINCRBY', KEYS[2], ARGV[4] .. '|limited', 1)
  redis.call('ZINCRBY', KEYS[3], 1, ARGV[4] .. '|' .. ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
"""

# KEYS: state, stats, top. ARGV: limit, window ms, cost, rule, key, analytics ttl.
SLIDING_WINDOW = _CLOCK + """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local index = math.floor(now / window)
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w = tonumber(state[1])
local current = 0
local previous = 0
if w == index then
  current = tonumber(state[2]) or 0
  previous = tonumber(state[3]) or 0
elseif w == index - 1 then
  previous = tonumber(state[2]) or 0
end
local elapsed = now - index * window
local used = previous * (window - elapsed) / window + current
local allowed = 0
local retry = 0
if used + cost <= limit then
  allowed = 1
  current = current + cost
  used = used + cost
elseif current + cost <= limit then
  retry = (window - elapsed) - (limit - current - cost) * window / previous
elseif cost <= limit then
  retry = (window - elapsed) + math.max(0, window - (limit - cost) * window / current)
else
  retry = 2 * window
end
if retry < 0 then retry = 0 end
redis.call('HSET', KEYS[1], 'w', index, 'c', current, 'p', previous)
redis.call('PEXPIRE', KEYS[1], math.ceil(2 * window))
local remaining = math.max(0, math.floor(limit - used))
local reset = retry
if allowed == 1 then reset = window - elapsed end
""" + _ANALYTICS + """
return {allowed, remaining, math.ceil(reset), math.ceil(retry)}
"""

# KEYS: state, stats, top. ARGV: tokens per ms, burst, cost, rule, key, analytics ttl.
TOKEN_BUCKET = _CLOCK + """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local retry = 0
if tokens >= cost then
  allowed = 1
  tokens = tokens - cost
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
local reset = retry
if allowed == 1 then reset = (burst - tokens) / rate end
""" + _ANALYTICS + """
return {allowed, math.floor(tokens), math.ceil(reset), math.ceil(retry)}
"""


class RedisCounts:
    name = "redis"

    def __init__(self, redis: RedisClients, *, prefix: str = "vonix:rl:", clock: Any = time.time) -> None:
        self.redis = redis
        self.prefix = reject_braces(prefix)
        self.clock = clock
        # "" on a single Redis (the original names), one hash tag per partition on a cluster.
        self._tags = ([f"{{rl.{n}}}:" for n in range(CLUSTER_PARTITIONS)]
                      if getattr(redis, "cluster", False) else [""])
        self.fallback = MemoryLimiter()
        self.local = LocalAnalytics(clock)  # decisions taken while Redis was unreachable
        self._window = redis.commands.register_script(SLIDING_WINDOW)
        self._bucket = redis.commands.register_script(TOKEN_BUCKET)
        self._down_until = 0.0

    def _keys(self, rule: str, key: str) -> list[str]:
        """State, stats and top keys of one decision: in one slot (the partition's tag) on a cluster."""
        name = f"{rule}|{key}"
        tags = self._tags
        base = self.prefix + (tags[zlib.crc32(name.encode()) % len(tags)] if len(tags) > 1 else tags[0])
        bucket = int(self.clock() // BUCKET_SECONDS)
        return [base + name, f"{base}stats:{bucket}", f"{base}top:{bucket}"]

    async def hit(self, rule: Rule, key: str, cost: int = 1) -> Decision:
        if self.redis.healthy and time.monotonic() >= self._down_until:
            keys = self._keys(rule.name, key)
            ttl = BUCKET_SECONDS * (BUCKETS + 1)
            try:
                if rule.burst is None:
                    reply = await self._window(keys=keys, args=[rule.limit, rule.period * 1000, cost, rule.name,
                                                                key, ttl])
                else:
                    reply = await self._bucket(keys=keys, args=[rule.rate / 1000, rule.burst, cost, rule.name,
                                                                key, ttl])
            except UNAVAILABLE as exc:
                if time.monotonic() >= self._down_until:
                    log.warning("ratelimit_redis_failed", error=exc.__class__.__name__)
                self._down_until = time.monotonic() + RETRY_AFTER
            else:
                allowed, remaining, reset_ms, retry_ms = (int(v) for v in reply)
                return Decision(bool(allowed), rule.capacity, remaining, reset_ms / 1000, retry_ms / 1000)
        return self._degraded(rule, key, cost)

    def _degraded(self, rule: Rule, key: str, cost: int) -> Decision:
        if rule.fail_open:
            local = self.fallback.hit(rule, f"{rule.name}|{key}", cost)
            decision = Decision(local.allowed, local.limit, local.remaining, local.reset, local.retry_after, True)
        else:
            decision = Decision(False, rule.capacity, 0, RETRY_AFTER, RETRY_AFTER, True)
        self.local.record(rule.name, key, decision.allowed)
        return decision

    async def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        counts, limited = self.local.snapshot()
        if not self.redis.healthy:
            return counts, limited
        newest = int(self.clock() // BUCKET_SECONDS)
        try:
            async with self.redis.commands.pipeline(transaction=False) as pipe:
                for tag in self._tags:
                    for number in range(newest - BUCKETS + 1, newest + 1):
                        pipe.hgetall(f"{self.prefix}{tag}stats:{number}")
                        pipe.zrevrange(f"{self.prefix}{tag}top:{number}", 0, 99, withscores=True)
                replies = await pipe.execute()
        except UNAVAILABLE as exc:
            log.warning("ratelimit_analytics_failed", error=exc.__class__.__name__)
            return counts, limited
        for stats, top in zip(replies[::2], replies[1::2], strict=True):
            counts.update({_text(k): int(v) for k, v in stats.items()})
            for member, score in top:
                limited[_text(member)] += int(score)
        return counts, limited

    def status(self) -> dict[str, Any]:
        return {"store": "redis", "redis_healthy": self.redis.healthy,
                "degraded": not self.redis.healthy or time.monotonic() < self._down_until,
                "fallback_keys": len(self.fallback)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
