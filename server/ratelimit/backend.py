"""Where limits are counted: one small interface, an in-process and a Redis implementation.

`MemoryCounts` (embedded mode) counts in this process. `RedisCounts` (server/ratelimit/redis.py)
counts atomically in Redis (one Lua script per algorithm) so every replica shares the count, and
falls back to a `MemoryLimiter` per rule's choice when Redis is unreachable.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from server.ratelimit.analytics import LocalAnalytics
from server.ratelimit.memory import Decision, MemoryLimiter
from server.ratelimit.rules import Rule


class LimiterBackend(Protocol):
    name: str

    async def hit(self, rule: Rule, key: str, cost: int = 1) -> Decision:
        """Count one request (of `cost`) against `rule` for `key`; never raises, never hangs."""

    async def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        """Counts by `rule|outcome` and limited counts by `rule|key` over the last hour."""

    def status(self) -> dict[str, Any]: ...


class MemoryCounts:
    name = "memory"

    def __init__(self, limiter: MemoryLimiter | None = None, analytics: LocalAnalytics | None = None) -> None:
        self.limiter = limiter or MemoryLimiter()
        self.analytics = analytics or LocalAnalytics()

    async def hit(self, rule: Rule, key: str, cost: int = 1) -> Decision:
        decision = self.limiter.hit(rule, f"{rule.name}|{key}", cost)
        self.analytics.record(rule.name, key, decision.allowed)
        return decision

    async def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        return self.analytics.snapshot()

    def status(self) -> dict[str, Any]:
        return {"store": "memory", "keys": len(self.limiter)}
