"""Ops endpoints: liveness, readiness and Prometheus metrics (exempt from rate limits)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import __version__
from server.jsonio import JSONResponse
from server.resources import resources_of


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
    Route("/api/health", health, methods=["GET"], name="health"),
    Route("/api/ready", ready, methods=["GET"], name="ready"),
    Route("/metrics", metrics, methods=["GET"], name="metrics"),
]
