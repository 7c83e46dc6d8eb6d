"""Ops endpoints: liveness, readiness and Prometheus metrics (exempt from rate limits)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from server import __version__
from server.jsonio import JSONResponse
from server.openapi import Media, api
from server.openapi.responses import Closed
from server.resources import resources_of

READY = {"type": "object", "required": ["ready", "failed", "components"],
         "properties": {"ready": {"type": "boolean"}, "failed": {"type": "array", "items": {"type": "string"}},
                        "components": {"type": "object"}}}


def _absent(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # left out of the answer, never null: no `default: null` either


class HealthComponent(Closed):
    """One dependency's state (`ComponentStatus.as_dict`): `detail` and `latency_ms` only when known."""

    status: Literal["ok", "down", "disabled"]
    detail: str | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_absent)
    latency_ms: float | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_absent)


class Health(Closed):
    """Liveness: `degraded` when a component is down, still 200 (the process itself serves).

    `components` always has `redis` and `lifecycle`; `database` and `migrations` appear once a
    readiness check has run (liveness does no I/O, it reports the last known states).
    """

    status: Literal["ok", "degraded"]
    version: str
    instance: str
    uptime_seconds: float
    components: dict[str, HealthComponent]

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "status": "ok", "version": "0.1.0", "instance": "a1b2c3d4", "uptime_seconds": 3600.5,
        "components": {"database": {"status": "ok", "latency_ms": 0.42},
                       "migrations": {"status": "ok", "detail": "0018"},
                       "redis": {"status": "disabled"}, "lifecycle": {"status": "ok"}}}]})


async def health(request: Request) -> Response:
    resources = resources_of(request)
    components = resources.health.liveness()
    degraded = any(c.status == "down" for c in components.values())
    return JSONResponse(
        {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "instance": resources.settings.instance_id,
            "uptime_seconds": round(resources.lifecycle.uptime_seconds, 1),
            "components": {name: c.as_dict() for name, c in components.items()},
        }
    )


async def ready(request: Request) -> Response:
    resources = resources_of(request)
    is_ready, components = await resources.health.readiness()
    failed = sorted(name for name, c in components.items() if c.status == "down")
    body = {
        "ready": is_ready,
        "failed": failed,
        "components": {name: c.as_dict() for name, c in components.items()},
    }
    return JSONResponse(body, status_code=200 if is_ready else 503)


async def metrics(request: Request) -> Response:
    resources = resources_of(request)
    resources.refresh_gauges()
    return Response(resources.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [
    api("/api/health", health, ["GET"], name="health", summary="Liveness: the process answers",
        ok={200: Health}),
    api("/api/ready", ready, ["GET"], name="ready", summary="Readiness: every dependency is up",
        ok={200: READY, 503: Media("application/json", "Not ready: `failed` names the components.",
                                     schema=READY)}),
    api("/metrics", metrics, ["GET"], name="metrics", summary="Prometheus metrics",
        ok={200: Media("text/plain; version=0.0.4; charset=utf-8", "Prometheus text exposition format.")}),
]
