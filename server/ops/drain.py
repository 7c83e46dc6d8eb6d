"""Graceful drain on SIGTERM (and the first Ctrl-C).

uvicorn alone would stop accepting, then close every websocket at once. Instead: readiness turns
503 at once (the load balancer stops sending new clients), websocket clients get close code 1012
spread over a jittered window so they reconnect to the other replicas gradually, in-flight
publishes finish, and only then does uvicorn shut down. A second signal exits immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn

from server.observability.logging import get_logger

log = get_logger("vonix.drain")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, resources: Any) -> None:
        super().__init__(config)
        self.resources = resources
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        # Not drain work, but this is where the running loop first exists: the accept loop's
        # limits come from the settings (server/eager_accept.py; other loops have none).
        limit_opening = getattr(asyncio.get_running_loop(), "limit_opening", None)
        if limit_opening is not None:
            settings = self.resources.settings
            limit_opening(settings.accept_opening_limit, settings.accept_opening_seconds)
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None or self.should_exit or not self.started:
            super().handle_exit(sig, frame)
            return
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            self._captured_signals.append(sig)
            self._drain_task = loop.create_task(self._drain(signal.Signals(sig).name))
            return
        super().handle_exit(sig, frame)

    async def _drain(self, signal_name: str) -> None:
        settings = self.resources.settings
        window = max(0.0, settings.drain_seconds * 0.5)
        log.info("drain_started", signal=signal_name, connections=len(self.resources.node.hub.connections),
                 window_seconds=window)
        self.resources.lifecycle.start_draining()
        try:
            await asyncio.wait_for(self.resources.node.drain(window), timeout=settings.drain_seconds)
        except TimeoutError:
            log.warning("drain_timed_out")
        except Exception:
            log.exception("drain_failed")
        log.info("drain_finished")
        self.should_exit = True
