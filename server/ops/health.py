"""Liveness and readiness.

Liveness (`/api/health`) answers 200 while the process can serve, and reports each component's
last known state: a database outage must not make an orchestrator restart every replica.
Readiness (`/api/ready`) checks live, each check bounded by a timeout, and answers 503 naming
what failed, so a load balancer stops sending traffic until it recovers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from server.db.database import Database
from server.db.migrate import head_revision
from server.infra.redis import RedisClients
from server.ops.lifecycle import Lifecycle

OK, DOWN, DISABLED = "ok", "down", "disabled"


@dataclass
class ComponentStatus:
    status: str
    detail: str | None = None
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.latency_ms is not None:
            body["latency_ms"] = self.latency_ms
        return body


class HealthChecks:
    def __init__(
        self, db: Database, redis: RedisClients | None, lifecycle: Lifecycle, timeout: float = 2.0
    ) -> None:
        self.db = db
        self.redis = redis
        self.lifecycle = lifecycle
        self.timeout = timeout
        self.head = head_revision()
        self.last: dict[str, ComponentStatus] = {}

    async def database(self) -> ComponentStatus:
        try:
            seconds = await asyncio.wait_for(self._ping_with_retry(), timeout=self.timeout)
        except Exception as exc:
            return ComponentStatus(DOWN, _short(exc))
        return ComponentStatus(OK, latency_ms=round(seconds * 1000, 2))

    async def _ping_with_retry(self) -> float:
        # A pool may hold connections the server closed while it was down: the first use fails
        # and drops them, the second uses a fresh connection.
        try:
            return await self.db.ping()
        except Exception:
            return await self.db.ping()

    async def migrations(self) -> ComponentStatus:
        try:
            current = await asyncio.wait_for(
                self.db.fetch_val("migration_version", "SELECT version_num FROM alembic_version"),
                timeout=self.timeout,
            )
        except Exception as exc:
            return ComponentStatus(DOWN, f"cannot read the schema version: {_short(exc)}")
        if current != self.head:
            return ComponentStatus(
                DOWN, f"database at {current}, code expects {self.head}; run vonix migrate"
            )
        return ComponentStatus(OK, detail=current)

    async def redis_status(self) -> ComponentStatus:
        if self.redis is None:
            return ComponentStatus(DISABLED, "no REDIS_URL: in-process broker and caches")
        started = time.perf_counter()
        healthy = await self.redis.check()
        if not healthy:
            return ComponentStatus(DOWN, self.redis.last_error)
        return ComponentStatus(OK, latency_ms=round((time.perf_counter() - started) * 1000, 2))

    def draining(self) -> ComponentStatus:
        if self.lifecycle.draining:
            return ComponentStatus(DOWN, "draining: shutting down")
        return ComponentStatus(OK)

    async def readiness(self) -> tuple[bool, dict[str, ComponentStatus]]:
        database, redis = await asyncio.gather(self.database(), self.redis_status())
        migrations = await self.migrations() if database.status == OK else ComponentStatus(
            DOWN, "database unreachable"
        )
        components = {
            "database": database,
            "migrations": migrations,
            "redis": redis,
            "lifecycle": self.draining(),
        }
        self.last = components
        ready = all(c.status in (OK, DISABLED) for c in components.values())
        return ready, components

    def liveness(self) -> dict[str, ComponentStatus]:
        """Last known states, no I/O: liveness must answer even when dependencies hang."""
        components = dict(self.last)
        if self.redis is None:
            components["redis"] = ComponentStatus(DISABLED)
        else:
            components["redis"] = ComponentStatus(OK if self.redis.healthy else DOWN, self.redis.last_error)
        components["lifecycle"] = self.draining()
        return components


def _short(exc: BaseException) -> str:
    text = f"{exc.__class__.__name__}: {exc}".strip().rstrip(":")
    return text[:300]
