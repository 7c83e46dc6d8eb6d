"""The two algorithms in process memory, with an injectable clock (embedded mode, Redis fallback).

Sliding-window counter: counts per fixed window of `period` seconds, and the previous window's
count weighted by how much of it still overlaps the sliding window. Exact enough (it assumes the
previous window's requests were spread evenly) at two integers per key.
Token bucket: `burst` tokens, refilled at `limit / period` per second; one request takes one.

`reset` (the `RateLimit-Reset` header) is the time until one more request is allowed when limited;
when allowed, the end of the current window (sliding window) or the time until the bucket is full.
Keys are kept in an LRU of `max_keys`; the oldest key forgets its count first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from server.ratelimit.rules import Rule


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds
    retry_after: float = 0.0  # seconds; 0 when allowed
    degraded: bool = False  # decided on this replica alone (the shared store was unreachable)

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(0, math.ceil(self.reset))),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


def sliding_retry(limit: int, cost: int, current: float, previous: float, window: float, elapsed: float) -> float:
    """Seconds until `cost` more fits, for a sliding-window counter that is over its limit now."""
    if current + cost <= limit:  # the previous window's weight is what blocks: wait for it to decay
        return max(0.0, (window - elapsed) - (limit - current - cost) * window / previous)
    if cost > limit:
        return 2 * window
    # wait for the next window, then for this window's count (now "previous") to decay enough
    return (window - elapsed) + max(0.0, window - (limit - cost) * window / current)


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._state: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._state)

    def hit(self, rule: Rule, key: str, cost: int = 1) -> Decision:
        if rule.burst is not None:
            return self._bucket(rule, key, cost)
        return self._window(rule, key, cost)

    def _touch(self, key: str, state: list[float]) -> None:
        self._state[key] = state
        self._state.move_to_end(key)
        while len(self._state) > self.max_keys:
            self._state.popitem(last=False)

    def _window(self, rule: Rule, key: str, cost: int) -> Decision:
        now, window, limit = self.clock(), rule.period, rule.limit
        index = math.floor(now / window)
        state = self._state.get(key)
        current = previous = 0.0
        if state is not None:
            if state[0] == index:
                current, previous = state[1], state[2]
            elif state[0] == index - 1:
                previous = state[1]
        elapsed = now - index * window
        used = previous * (window - elapsed) / window + current
        allowed = used + cost <= limit
        if allowed:
            current += cost
            used += cost
        self._touch(key, [index, current, previous])
        remaining = max(0, math.floor(limit - used))
        if allowed:
            return Decision(True, limit, remaining, window - elapsed)
        retry = sliding_retry(limit, cost, current, previous, window, elapsed)
        return Decision(False, limit, remaining, retry, retry)

    def _bucket(self, rule: Rule, key: str, cost: int) -> Decision:
        assert rule.burst is not None
        now, rate, burst = self.clock(), rule.rate, rule.burst
        state = self._state.get(key)
        tokens = float(burst) if state is None else min(burst, state[0] + max(0.0, now - state[1]) * rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._touch(key, [tokens, now])
        if allowed:
            return Decision(True, burst, math.floor(tokens), (burst - tokens) / rate)
        retry = (cost - tokens) / rate
        return Decision(False, burst, math.floor(tokens), retry, retry)
