"""Refuse request bodies over the limit (413), whether declared by Content-Length or streamed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import PayloadTooLarge


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
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
