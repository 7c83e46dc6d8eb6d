"""Avatar upload and the media files it produces (filled in by the avatar work)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
