"""The last line of defence: any unexpected exception becomes the standard 500 body.

Logged once (with the stack, here), fingerprinted and counted by the error tracker; the body has
the request id and no internals. Catching here, rather than in Starlette's ServerErrorMiddleware,
stops the exception from being re-raised into uvicorn and logged a second time.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import error_response
from server.observability.logging import get_logger

log = get_logger("vonix.errors")


class ErrorCaptureMiddleware:
    def __init__(self, app: ASGIApp, tracker: Any) -> None:
        self.app = app
        self.tracker = tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            route = scope.get("route")
            log.exception("unhandled_error", error_type=exc.__class__.__name__,
                          route=getattr(route, "path", None))
            await self.tracker.record(exc, context={"request_id": scope.get("vonix.request_id"),
                                                    "method": scope.get("method"),
                                                    "route": getattr(route, "path", None)})
            if started:
                return  # the response is under way: nothing sensible can be sent
            response = error_response(Request(scope), 500, "internal_error", "Something went wrong on our side.")
            await response(scope, receive, send)
