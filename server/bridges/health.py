"""The server's side of bridge health: what `PUT /api/bridges/discord/health` stores and
`GET /api/admin/stats` shows under `"bridges"`.

A report is kept for `KEEP_SECONDS` (1 h): in Redis when the app has it (every replica reads the
same report, whichever replica the bridge reached), else in the process's L1 cache (embedded mode:
one replica). A report older than `STALE_SECONDS` (60 s; the bridge reports every 15 s) is shown
with `"stale": true`: the bridge stopped reporting (crashed, or cannot reach Vonix). After an hour
without a report the bridge is not listed any more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from server.cache.local import Entry
from server.observability.logging import get_logger

log = get_logger("vonix.bridges")

BRIDGES = ("discord",)  # bounded: the names a report may use (the route's path)
KEEP_SECONDS = 3600
STALE_SECONDS = 60.0
_KEY = "vonix:bridge-health:"


class BridgeHealth:
    def __init__(self, resources: Any, clock: Callable[[], float] = time.time) -> None:
        self.resources = resources
        self.clock = clock

    async def put(self, bridge: str, report: dict[str, Any]) -> dict[str, Any]:
        stored = {**report, "reported_at": self.clock()}
        redis = self.resources.redis
        if redis is not None:
            try:
                await redis.commands.set(_KEY + bridge, orjson.dumps(stored), ex=KEEP_SECONDS)
                return stored
            except Exception as exc:  # Redis down: this replica still shows it
                log.warning("bridge_health_store_failed", bridge=bridge, error=exc.__class__.__name__)
        cache = self.resources.cache
        if cache is not None:
            now = self.clock()
            cache.l1.put(Entry(_KEY + bridge, stored, now + KEEP_SECONDS, now + KEEP_SECONDS))
        return stored

    async def get(self, bridge: str) -> dict[str, Any] | None:
        stored: dict[str, Any] | None = None
        redis = self.resources.redis
        if redis is not None:
            try:
                raw = await redis.commands.get(_KEY + bridge)
                stored = orjson.loads(raw) if raw else None
            except Exception as exc:
                log.warning("bridge_health_read_failed", bridge=bridge, error=exc.__class__.__name__)
        if stored is None and self.resources.cache is not None:
            entry = self.resources.cache.l1.get(_KEY + bridge)
            stored = dict(entry.value) if entry is not None else None
        if stored is None:
            return None
        age = max(0.0, self.clock() - float(stored.get("reported_at") or 0))
        return {**stored, "age_seconds": round(age, 1), "stale": age > STALE_SECONDS}

    async def report(self) -> dict[str, Any]:
        """`{"discord": {...report, "reported_at", "age_seconds", "stale"}}` for the bridges seen."""
        out: dict[str, Any] = {}
        for bridge in BRIDGES:
            health = await self.get(bridge)
            if health is not None:
                out[bridge] = health
        return out
