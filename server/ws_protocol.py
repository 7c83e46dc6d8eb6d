"""uvicorn's websockets-sansio protocol with a smaller per-connection footprint (same behaviour).

An idle websocket costs what its protocol object keeps for the connection's life. uvicorn's
`WebSocketsSansIOProtocol` keeps ~8.5 KiB a connection that an open connection does not need
(server RSS over 2,000 idle connections, each item measured on its own):

- an `asyncio.Queue` for the incoming ASGI events and an `asyncio.Event` for write backpressure:
  four deques (a deque allocates its first 64-slot block at once, ~760 bytes) for what is, on an
  idle connection, an empty list and a flag. `Inbox` and `Gate` below: ~3.7 KiB;
- the handshake's parsed headers (a dict, a list, and a list per header): the Request's are
  still referenced by websockets' parser generator, the Response's by uvicorn; both are emptied
  once the handshake is done: ~2.5 + ~1.3 KiB;
- an instance `__dict__` of 37 attributes, past the 30 that CPython's shared-key dicts take,
  hence a 1.6 KiB table per connection: `__slots__` instead (~380 bytes): ~1.1 KiB.

Selected in `server/cli.py` (`uvicorn.Config(ws=...)`); the test server uses it too.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

# ASGI scope extension: the protocol's `write_text`, for the ASGI app that knows it (server/ws.py).
WRITE_TEXT = "vonix.websocket.write_text"
# A callable: the connection is through its first exchange (server/eager_accept.py admits the next).
OPENED = "vonix.opened"
_SHORT_TEXT_HEADERS = tuple(bytes((0x81, size)) for size in range(126))  # FIN + text opcode, 7-bit length


class Inbox:
    """The part of `asyncio.Queue` uvicorn uses (`put_nowait`, `get`, `empty`), for the one
    consumer an ASGI connection has: the app's `receive`."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("another coroutine is already waiting for the next message")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Gate:
    """The part of `asyncio.Event` uvicorn uses for write backpressure (`set`, `clear`, `wait`,
    `is_set`); open by default, and no waiter list until someone has to wait."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        if self._open:
            return
        self._open = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if self._open:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            self._waiters.remove(waiter)


class VonixWebSocketProtocol(WebSocketsSansIOProtocol):
    # Every attribute uvicorn's protocol sets (an unknown new one would land in `__dict__`: harmless).
    __slots__ = (
        "app", "app_state", "asgi_version", "client", "close_sent", "close_timeout", "close_timer", "config", "conn",
        "connections", "curr_msg_data_type", "default_headers", "disconnected", "frames", "handshake_complete",
        "handshake_initiated", "initial_response", "last_ping_rtt", "logger", "loop", "pending_ping_payload",
        "ping_interval", "ping_sent_at", "ping_timeout", "ping_timer", "pong_timer", "queue", "read_paused",
        "request", "response", "root_path", "scheme", "scope", "server", "tasks", "transport", "writable",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Gate()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope holds the headers now. websockets' parser generator keeps the Request for the
        # connection's life (a local of `ServerProtocol.parse`) but never reads it again.
        event.headers.clear()
        opened = getattr(self.loop, "opened", None)  # the accept loop's, when serving on it
        if opened is not None:
            self.scope["extensions"][OPENED] = functools.partial(opened, self.transport)  # type: ignore[assignment]
        if self.response is not None and self.response.status_code == 101:
            # uvicorn types extension values as dicts (the ASGI spec's shape); ours is a callable.
            self.scope["extensions"][WRITE_TEXT] = self.write_text  # type: ignore[assignment]

    def write_text(self, payload: bytes) -> bool:
        """The fan-out fast path (`realtime.transport`): one text frame, UTF-8 `payload`, framed
        here and written in this call. Server frames are unmasked, so the frame is a 2-10 byte
        header and the payload as is; no `Frame` object, no ASGI message, no coroutine, no
        str round trip. False, with nothing written, whenever uvicorn's own `send` must decide
        (handshake not done, closing or closed, writes paused by backpressure)."""
        if (self.close_sent or not self.handshake_complete or self.initial_response is not None
                or not self.writable.is_set() or self.conn.state is not State.OPEN):
            return False
        size = len(payload)
        if size < 126:
            header = _SHORT_TEXT_HEADERS[size]
        elif size < 65536:
            header = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + size.to_bytes(8, "big")
        self.transport.write(header + payload)
        return True

    def start_keepalive(self) -> None:
        # Called once, right after the 101 response went out: the response is not needed again.
        self.response = None  # type: ignore[assignment]
        super().start_keepalive()


class VonixHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, telling the accept loop when a plain HTTP connection has had its
    first request read (a websocket upgrade hands the transport on and tells later, after its
    first frame: `server/ws.py`)."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not getattr(self, "_told_opened", False):
            self._told_opened = True
            opened = getattr(self.loop, "opened", None)
            if opened is not None and self.transport.get_protocol() is self:
                opened(self.transport)
