"""Refuse request bodies over the limit (413), whether declared by Content-Length or streamed.

Every path gets `max_bytes` (MAX_BODY_BYTES) except the few named in `allowances`, exact paths
whose bodies are legitimately larger (the avatar upload takes AVATAR_MAX_BYTES): raising the
global limit for one upload would let every JSON endpoint buffer that much too.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import PayloadTooLarge


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, allowances: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.allowances = dict(allowances or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.allowances.get(scope["path"], self.max_bytes)
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    scope["vonix.body_too_large"] = True
                break

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if scope.get("vonix.body_too_large"):
                raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    scope["vonix.body_too_large"] = True
                    raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)
