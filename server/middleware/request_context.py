"""Request id and access log.

The id is taken from `X-Request-ID` when it is a sane token, made otherwise; it is bound to the
structlog context so every line logged while serving the request carries it, returned in the
response header and placed in every error body.
"""

from __future__ import annotations

import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from realtime.ids import IdMaker
from server.observability.logging import get_logger

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
access_log = get_logger("vonix.access")


new_request_id = IdMaker()  # a callable: one per process, no state beyond a counter


def bind_request_context(scope: Scope) -> str:
    """Pick the id (a sane incoming `X-Request-ID`, else a new one), keep it in the scope and make it
    the log context: `request_id` for HTTP, `connection_id` for a websocket. Shared with the `/ws`
    entry (server/ws_entry.py), which serves websockets without this middleware."""
    incoming = _header(scope, b"x-request-id")
    request_id = incoming if incoming and _SANE_ID.match(incoming) else new_request_id()
    scope["vonix.request_id"] = request_id
    id_key = "request_id" if scope["type"] == "http" else "connection_id"
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(**{id_key: request_id})
    return request_id


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = bind_request_context(scope)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500
        header_value = request_id.encode()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", header_value))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            access_log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=getattr(route, "path", None),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=(scope.get("client") or ("", 0))[0],
            )
            structlog.contextvars.clear_contextvars()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None
