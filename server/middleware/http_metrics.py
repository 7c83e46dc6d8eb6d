"""HTTP count and latency by route *template* (bounded labels), method and status."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.observability.metrics import Metrics

UNMATCHED = "<unmatched>"
_OPS_ROUTES = {"/api/health", "/api/ready", "/metrics", UNMATCHED}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, window: Any = None) -> None:
        self.app = app
        self.metrics = metrics
        self.window = window  # the alert rules' recent-requests window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.http_in_flight.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            if status == 404 and route is None:
                template = UNMATCHED
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            labels = (method, template, str(status))
            elapsed = time.perf_counter() - started
            self.metrics.http_requests.labels(*labels).inc()
            self.metrics.http_latency.labels(*labels).observe(elapsed)
            if self.window is not None and template not in _OPS_ROUTES:
                self.window.add(status, elapsed)
