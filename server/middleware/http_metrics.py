"""HTTP count and latency by route *template* (bounded labels), method and status."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.observability.metrics import Metrics

UNMATCHED = "<unmatched>"
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
            self.metrics.http_requests.labels(*labels).inc()
            self.metrics.http_latency.labels(*labels).observe(time.perf_counter() - started)
