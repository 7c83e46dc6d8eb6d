"""The PWA shell at `/` and its static assets under `/static`."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles


def page_routes(static_dir: Path) -> list[BaseRoute]:
    index = static_dir / "index.html"

    async def home(request: Request) -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    return [
        Route("/", home, methods=["GET", "HEAD"], name="home"),
        Mount("/static", app=StaticFiles(directory=static_dir, check_dir=False), name="static"),
    ]
