"""Run the real app on a real uvicorn server inside the test's event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import uvicorn

from server.app import create_app
from server.settings import Settings
from server.ws_protocol import VonixWebSocketProtocol
from tests.support.inloop import QuietServer as _QuietServer
from tests.support.services import free_port


class AppServer:
    def __init__(self, settings: Settings, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.app = create_app(settings)
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def resources(self) -> Any:
        return self.app.state.vonix

    async def start(self) -> AppServer:
        # proxy_headers=False: the app's own rule (server/ratelimit/client_ip.py, TRUSTED_PROXIES) decides
        # who the client is; uvicorn's default would trust X-Forwarded-For from 127.0.0.1 before the app.
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None, proxy_headers=False,
                                access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                                ws=VonixWebSocketProtocol, ws_max_size=1024 * 1024, ws_per_message_deflate=False)
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(400):
            if self._server.started:
                return self
            if self._task.done():
                self._task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.025)
        raise TimeoutError("server did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=15)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10, **kwargs)

    async def __aenter__(self) -> AppServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
