"""Error reports from browsers, and the admin views of errors and cluster stats."""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from server.auth.principal import requires
from server.errors import PayloadTooLarge, RateLimited
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed, Open
from server.resources import resources_of
from server.routes.ops import HealthComponent

CLIENT_REPORTS_PER_MINUTE = 30


class ClientError(BaseModel):
    message: str = Field(min_length=1, max_length=2000)
    type: str = Field(default="Error", max_length=128)
    stack: str | None = Field(default=None, max_length=8000)
    url: str | None = Field(default=None, max_length=2000)
    source: str | None = Field(default=None, max_length=255)  # file:line of the throw, if known
    user_agent: str | None = Field(default=None, max_length=512)


# --- responses (described for the OpenAPI document; the handlers and their helpers build them) -
class ErrorFingerprint(Closed):
    """The group the report joined (the same error from many browsers is one group)."""

    fingerprint: str


class ErrorGroup(Closed):
    """An `error_events` row: one error type at one place, counted, with its latest `sample`."""

    fingerprint: str
    source: Literal["server", "client"]
    error_type: str
    location: str | None
    message: str | None
    count: int
    first_seen: datetime
    last_seen: datetime
    sample: dict[str, Any] | None  # message, stack and the request's context (url, user agent, ids)


class ErrorGroups(Closed):
    """The 50 most recently seen groups, newest first."""

    groups: list[ErrorGroup]


class Replica(Open):
    """A replica's last heartbeat (`ClusterStats.local`; `ts`: Unix time)."""

    instance: str
    ts: float
    connections: int
    users: int
    messages_per_minute: float
    uptime_seconds: float


class CacheSummary(Closed):
    """`Cache.stats`: size, hit ratios (null before any lookup) and whether L2 is coherent."""

    enabled: bool
    entries: int
    l1_hit_ratio: float | None
    l2_hit_ratio: float | None
    shared: str
    coherent: bool


class BridgeState(Open):
    """A bridge's last health report, its age and whether it is stale (no report for 60 s)."""

    reported_at: float
    age_seconds: float
    stale: bool


class ClusterReport(Open):
    """`ClusterStats.report`: the replicas seen in the last 30 s and their sums."""

    version: str
    instance: str
    uptime_seconds: float
    replicas: list[Replica]
    replica_count: int
    connections: int
    users_online: int
    messages_per_minute: float
    database: HealthComponent | None  # null until a readiness check has run
    redis: HealthComponent | None
    cache: CacheSummary | None
    bridges: dict[str, BridgeState]  # bridge name (`discord`) -> its health, for the bridges seen


class _PerClient:
    """A small in-process sliding window: report floods from one client are refused (429)."""

    def __init__(self, limit: int, seconds: float = 60.0) -> None:
        self.limit = limit
        self.seconds = seconds
        self.hits: dict[str, deque[float]] = {}

    def allow(self, key: str) -> float:
        now = time.monotonic()
        window = self.hits.setdefault(key, deque())
        while window and window[0] <= now - self.seconds:
            window.popleft()
        if len(window) >= self.limit:
            return window[0] + self.seconds - now
        window.append(now)
        if len(self.hits) > 10_000:
            self.hits = {k: v for k, v in self.hits.items() if v}
        return 0.0


async def report_client_error(request: Request) -> Response:
    resources = resources_of(request)
    limit = request.app.state.__dict__.setdefault("client_error_limiter", _PerClient(CLIENT_REPORTS_PER_MINUTE))
    wait = limit.allow(request.client.host if request.client else "unknown")
    if wait:
        raise RateLimited("Too many error reports.", headers={"Retry-After": str(int(wait) + 1)})
    declared = int(request.headers.get("content-length") or 0)
    if declared > resources.settings.client_error_max_bytes:
        raise PayloadTooLarge(f"Error reports are limited to {resources.settings.client_error_max_bytes} bytes.")
    body = await read_json(request, ClientError)
    assert resources.errors is not None  # set by Resources.build
    fingerprint = await resources.errors.record_group(
        "client", f"client.{body.type}", body.source, body.message, body.stack,
        {"url": body.url, "user_agent": body.user_agent or request.headers.get("user-agent"),
         "request_id": request.scope.get("vonix.request_id")})
    return JSONResponse({"fingerprint": fingerprint}, status_code=202)


@requires("admin.errors.read")
async def list_errors(request: Request) -> Response:
    source = request.query_params.get("source")
    errors = resources_of(request).errors
    assert errors is not None  # set by Resources.build
    groups = await errors.groups(source=source if source in ("server", "client") else None)
    return JSONResponse({"groups": groups})


@requires("admin.stats.read")
async def stats(request: Request) -> Response:
    cluster = resources_of(request).stats
    assert cluster is not None  # set by Resources.build
    return JSONResponse(await cluster.report())


routes = [
    api("/api/errors", report_client_error, ["POST"], ok={202: ErrorFingerprint}),
    api("/api/admin/errors", list_errors, ["GET"], ok={200: ErrorGroups}),
    api("/api/admin/stats", stats, ["GET"], ok={200: ClusterReport}),
]
