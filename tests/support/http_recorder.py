"""A tiny real HTTP server on loopback that records requests and answers as told (webhooks, OTLP)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.inloop import QuietServer as _Quiet
from tests.support.services import free_port


class HttpRecorder:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []
        self.status = 200
        self.delay = 0.0
        self._server: _Quiet | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((request.url.path, body, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        return Response(status_code=self.status)

    async def start(self) -> HttpRecorder:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT"])])
        self._server = _Quiet(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                             access_log=False, lifespan="off"))
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = None
