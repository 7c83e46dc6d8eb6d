"""Cluster statistics for `GET /api/admin/stats`.

Every replica writes a heartbeat (connections, users, publishes in the last minute) every few
seconds into one Redis hash; the stats view sums the replicas seen in the last 30 s. Without
Redis there is one replica and the numbers are local.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import orjson

from server import __version__
from server.bridges.health import BridgeHealth
from server.observability.logging import get_logger

log = get_logger("vonix.stats")
HEARTBEAT_KEY = "vonix:replicas"
FRESH_SECONDS = 30.0


class ClusterStats:
    def __init__(self, resources: Any, interval: float = 10.0) -> None:
        self.resources = resources
        self.interval = interval
        self._publishes: deque[tuple[float, int]] = deque(maxlen=64)

    def local(self) -> dict[str, Any]:
        node = self.resources.node
        now = time.time()
        self._publishes.append((now, node.published))
        minute_ago = [(t, c) for t, c in self._publishes if t >= now - 60]
        first = minute_ago[0] if minute_ago else (now, node.published)
        elapsed = max(1.0, now - first[0])
        per_minute = (node.published - first[1]) * 60.0 / elapsed
        return {"instance": self.resources.settings.instance_id, "ts": now,
                "connections": len(node.hub.connections), "users": len(node.hub.by_user),
                "messages_per_minute": round(per_minute, 1), "uptime_seconds": round(
                    self.resources.lifecycle.uptime_seconds, 1)}

    async def beat(self) -> None:
        redis = self.resources.redis
        if redis is None:
            return
        entry = self.local()
        try:
            await redis.commands.hset(HEARTBEAT_KEY, entry["instance"], orjson.dumps(entry))
            await redis.commands.expire(HEARTBEAT_KEY, 3600)
        except Exception as exc:
            log.debug("replica_heartbeat_failed", error=exc.__class__.__name__)

    async def run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def replicas(self) -> list[dict[str, Any]]:
        redis = self.resources.redis
        local = self.local()
        if redis is None:
            return [local]
        try:
            raw = await redis.commands.hgetall(HEARTBEAT_KEY)
        except Exception:
            return [local]
        now = time.time()
        seen = {}
        for value in raw.values():
            entry = orjson.loads(value)
            if now - entry["ts"] <= FRESH_SECONDS:
                seen[entry["instance"]] = entry
        seen[local["instance"]] = local
        return sorted(seen.values(), key=lambda e: e["instance"])

    async def report(self) -> dict[str, Any]:
        resources = self.resources
        replicas = await self.replicas()
        health = resources.health.liveness()
        cache = getattr(resources, "cache", None)
        return {
            "version": __version__,
            "instance": resources.settings.instance_id,
            "uptime_seconds": round(resources.lifecycle.uptime_seconds, 1),
            "replicas": replicas,
            "replica_count": len(replicas),
            "connections": sum(r["connections"] for r in replicas),
            "users_online": sum(r["users"] for r in replicas),
            "messages_per_minute": round(sum(r["messages_per_minute"] for r in replicas), 1),
            "database": health.get("database").as_dict() if health.get("database") else None,
            "redis": health.get("redis").as_dict() if health.get("redis") else None,
            "cache": cache.stats() if cache is not None and hasattr(cache, "stats") else None,
            "bridges": await BridgeHealth(resources).report(),  # issue 18: {"discord": {..., "stale"}}
        }
