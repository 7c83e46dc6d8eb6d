"""Refuse request bodies over the limit (413), whether declared by Content-Length or streamed.

Every path gets `max_bytes` (MAX_BODY_BYTES) except the few named in `allowances`, exact paths
whose bodies are legitimately larger (the avatar upload takes AVATAR_MAX_BYTES): raising the
global limit for one upload would let every JSON endpoint buffer that much too.

Uploads whose path carries an id (`PUT /api/posts/{id}/image`, POST_IMAGE_MAX_BYTES) are matched
by `PATTERN_ALLOWANCES`; their limit is read from the app's settings (`scope["app"]`, set by
Starlette before the middleware runs), so the allowance needs nothing from the app factory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import PayloadTooLarge

# (method, full path pattern, Settings attribute holding the limit)
PATTERN_ALLOWANCES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("PUT", re.compile(r"/api/posts/[0-9]{1,19}/image"), "post_image_max_bytes"),
)


def _pattern_limit(scope: Scope) -> int | None:
    """The settings' limit of an upload route with an id in its path, or None (not one of them)."""
    path, method = scope["path"], scope.get("method")
    for allowed_method, pattern, setting in PATTERN_ALLOWANCES:
        if method == allowed_method and pattern.fullmatch(path):
            app: Any = scope.get("app")
            settings = getattr(getattr(getattr(app, "state", None), "vonix", None), "settings", None)
            limit = getattr(settings, setting, None)
            return limit if isinstance(limit, int) else None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, allowances: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.allowances = dict(allowances or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.allowances.get(scope["path"]) or _pattern_limit(scope) or self.max_bytes
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
