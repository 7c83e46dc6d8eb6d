"""Ops endpoints: liveness, readiness and Prometheus metrics (exempt from rate limits)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server import __version__
from server.jsonio import JSONResponse
from server.openapi import Media, api
from server.resources import resources_of

READY = {"type": "object", "required": ["ready", "failed", "components"],
         "properties": {"ready": {"type": "boolean"}, "failed": {"type": "array", "items": {"type": "string"}},
                        "components": {"type": "object"}}}


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
    api("/api/health", health, ["GET"], name="health", summary="Liveness: the process answers"),
    api("/api/ready", ready, ["GET"], name="ready", summary="Readiness: every dependency is up",
        ok={200: READY, 503: Media("application/json", "Not ready: `failed` names the components.",
                                     schema=READY)}),
    api("/metrics", metrics, ["GET"], name="metrics", summary="Prometheus metrics",
        ok={200: Media("text/plain; version=0.0.4; charset=utf-8", "Prometheus text exposition format.")}),
]
