"""The ASGI entry: websocket scopes for `/ws` go straight to the handler, the rest to Starlette.

An idle websocket is a coroutine suspended in `receive()` for as long as the client stays, and
through Starlette every frame on the way to it stays alive too: each middleware's `__call__`
(request context, security headers, CORS, tracing, error capture, metrics, body limit), the
exception middleware's wrappers, the router, the route and the session wrapper, plus a Starlette
`WebSocket`. None of those middlewares acts on a websocket scope except the request context,
which the entry does itself (same id rule, same `connection_id` and `route` in every log line);
Starlette's exception handlers still answer for the handshake (`ws._answer_error`). HTTP, and
websocket scopes on any other path, take the full stack as before.
"""

from __future__ import annotations

import structlog
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from server import ws
from server.middleware.request_context import bind_request_context


class VonixApp(Starlette):
    """Starlette with `/ws` websockets dispatched before the middleware stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and get_route_path(scope) == ws.PATH:  # the router's own path rule
            scope["app"] = self
            bind_request_context(scope)
            structlog.contextvars.bind_contextvars(route=ws.PATH)
            await ws.websocket_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
