"""Discord's gateway (the bot's websocket) for the bridge: hello, identify or resume, heartbeats,
dispatches.

The connection: HELLO (op 10) gives the heartbeat interval; the client IDENTIFYs (op 2, intents
GUILDS, GUILD_MESSAGES and MESSAGE_CONTENT) or, with a session from an earlier connection, RESUMEs
(op 6: session id and the last sequence number, on the `resume_gateway_url` READY gave) so Discord
replays what was missed. Heartbeats (op 1 with the last sequence) go out every interval (the first
after a random fraction of it); a heartbeat whose ACK (op 11) has not come by the next one means
a zombie connection: it is closed with 4000 (not 1000, which would end the session) and resumed.
Op 7 (reconnect) resumes; op 9 (invalid session) identifies again unless it says resumable. Close
codes 4004 (bad token), 4010-4014 (bad shard, version or intents) stop the client: retrying cannot
help, the health report says `failed`. Anything else reconnects after a capped, jittered backoff.

Dispatches are handed to `on_dispatch(type, data)` in order, one at a time, from a queue, so a
slow handler never delays heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from realtime.backoff import Backoff
from server.observability.logging import get_logger

log = get_logger("vonix.discord.gateway")

INTENTS = (1 << 0) | (1 << 9) | (1 << 15)  # GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT
FATAL_CLOSE = frozenset({4004, 4010, 4011, 4012, 4013, 4014})
RESET_SESSION_CLOSE = frozenset({4007, 4009})

Dispatch = Callable[[str, dict[str, Any]], Awaitable[None]]


def _with_query(url: str, base: str) -> str:
    """`resume_gateway_url` comes without `?v=10&encoding=json`: keep the configured query."""
    parts = urlsplit(url)
    if parts.query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlsplit(base).query, ""))


class Gateway:
    def __init__(self, url: str, token: str, on_dispatch: Dispatch, *,
                 on_change: Callable[[], None] | None = None, backoff: tuple[float, float] = (1.0, 60.0)) -> None:
        self.url = url
        self._token = token
        self.on_dispatch = on_dispatch
        self.on_change = on_change or (lambda: None)
        self.backoff = Backoff(*backoff)
        self.state = "connecting"
        self.session_id: str | None = None
        self.resume_url: str | None = None
        self.seq: int | None = None
        self.user_id: str | None = None
        self.last_error: str | None = None
        self.connections = 0
        self._ws: ClientConnection | None = None
        self._acked = True
        self._closing = False
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            log.info("discord_gateway_" + state)
            self.on_change()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(), name="discord-gateway"),
                       asyncio.create_task(self._deliver(), name="discord-dispatch")]

    async def close(self) -> None:
        """Close with 1000 (Discord ends the session) and stop."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(1000, "bridge stopping"), 3)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._set("stopped")

    async def _deliver(self) -> None:
        while True:
            kind, data = await self._events.get()
            try:
                await self.on_dispatch(kind, data)
            except Exception as exc:
                log.exception("discord_dispatch_failed", type=kind, error=exc.__class__.__name__)

    async def _supervise(self) -> None:
        while not self._closing:
            resuming = self.session_id is not None and self.seq is not None
            self._set("resuming" if resuming else "connecting")
            url = _with_query(self.resume_url, self.url) if resuming and self.resume_url else self.url
            code = await self._connect_once(url, resuming)
            if self._closing:
                return
            if code in FATAL_CLOSE:
                self.last_error = f"gateway closed {code}"
                log.error("discord_gateway_failed", code=code)
                self._set("failed")
                return
            if code in RESET_SESSION_CLOSE:
                self.session_id = self.seq = None
            self._set("disconnected")
            delay = self.backoff.next()
            log.info("discord_gateway_reconnecting", code=code, delay=round(delay, 2))
            await asyncio.sleep(delay)

    async def _connect_once(self, url: str, resuming: bool) -> int:
        try:
            ws = await websockets.connect(url, open_timeout=10, max_size=2**24, compression=None)
        except Exception as exc:
            self.last_error = f"gateway connect: {exc.__class__.__name__}"
            log.warning("discord_gateway_connect_failed", error=exc.__class__.__name__)
            return 1006
        self._ws = ws
        heartbeat: asyncio.Task[None] | None = None
        try:
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if hello.get("op") != 10:
                await ws.close(4000, "expected hello")
                return 4000
            interval = float(hello["d"]["heartbeat_interval"]) / 1000.0
            self._acked = True
            heartbeat = asyncio.create_task(self._heartbeat(ws, interval), name="discord-heartbeat")
            if resuming:
                await self._send(ws, 6, {"token": self._token, "session_id": self.session_id, "seq": self.seq})
            else:
                await self._send(ws, 2, {"token": self._token, "intents": INTENTS,
                                         "properties": {"os": "linux", "browser": "vonix", "device": "vonix"}})
            async for raw in ws:
                await self._handle(ws, orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass
        except (TimeoutError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self.last_error = f"gateway: {exc.__class__.__name__}"
            log.warning("discord_gateway_protocol_error", error=exc.__class__.__name__)
            with contextlib.suppress(Exception):
                await ws.close(4000, "protocol error")
        finally:
            self._ws = None
            self.ready.clear()
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            with contextlib.suppress(Exception):
                await ws.close()
        code = ws.close_code if ws.close_code is not None else 1006
        if code != 1000 or not self._closing:
            self.last_error = self.last_error if code in (1000, 1006) else f"gateway closed {code}"
        return code

    async def _send(self, ws: ClientConnection, op: int, data: Any) -> None:
        await ws.send(orjson.dumps({"op": op, "d": data}).decode())

    async def _heartbeat(self, ws: ClientConnection, interval: float) -> None:
        await asyncio.sleep(interval * random.random())
        while True:
            if not self._acked:
                self.last_error = "gateway: heartbeat not acknowledged"
                log.warning("discord_gateway_zombie")
                await ws.close(4000, "heartbeat not acknowledged")  # not 1000: the session resumes
                return
            self._acked = False
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._send(ws, 1, self.seq)
            await asyncio.sleep(interval)

    async def _handle(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == 0:
            if frame.get("s") is not None:
                self.seq = int(frame["s"])
            kind, data = str(frame.get("t")), frame.get("d") or {}
            if kind == "READY":
                self.session_id = str(data.get("session_id"))
                self.resume_url = data.get("resume_gateway_url") or None
                self.user_id = str((data.get("user") or {}).get("id") or "") or None
                self._ready()
            elif kind == "RESUMED":
                self._ready()
            else:
                self._events.put_nowait((kind, data))
        elif op == 1:
            await self._send(ws, 1, self.seq)
        elif op == 11:
            self._acked = True
        elif op == 7:
            await ws.close(4000, "reconnect requested")
        elif op == 9:
            if not frame.get("d"):
                self.session_id = self.seq = None
            await asyncio.sleep(1 + random.random() * 2 if not self._closing else 0)
            await ws.close(4000, "invalid session")

    def _ready(self) -> None:
        self.connections += 1
        self.backoff.reset()
        self.ready.set()
        self._set("connected")
