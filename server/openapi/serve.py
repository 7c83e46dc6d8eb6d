"""Serve the generated document at `/api/openapi.json` and the viewer page at `/api/docs`.

The document is built from `request.app.routes` on first use and kept on the app's state (one
per app, so two apps in one process never share it). The page is static/api-docs.html: Swagger UI
vendored under static/vendor/swagger-ui/ (no CDN) and started by static/js/api-docs.js, so the
site's CSP (`script-src 'self'`) holds on this page too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from server.openapi.document import build_document
from server.openapi.route import Media, api

DOCUMENT_SCHEMA = {"type": "object", "required": ["openapi", "info", "paths"],
                   "properties": {"openapi": {"type": "string"}, "info": {"type": "object"},
                                  "paths": {"type": "object"}}}


def document_of(request: Request) -> bytes:
    state = request.app.state
    cached: bytes | None = getattr(state, "openapi_document", None)
    if cached is None:
        cached = orjson.dumps(build_document(request.app.routes))
        state.openapi_document = cached
    return cached


async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document of this API, generated from its routes"""
    return Response(document_of(request), media_type="application/json",
                    headers={"Cache-Control": "no-cache"})


def openapi_routes(static_dir: Path) -> list[BaseRoute]:
    page = static_dir / "api-docs.html"

    async def api_docs(request: Request) -> Response:
        return FileResponse(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    return [
        api("/api/openapi.json", openapi_json, ["GET"], tags=["meta"], ok={200: DOCUMENT_SCHEMA}),
        Route("/api/docs", api_docs, methods=["GET", "HEAD"], include_in_schema=False),
    ]


__all__: list[Any] = ["Media", "document_of", "openapi_routes"]
