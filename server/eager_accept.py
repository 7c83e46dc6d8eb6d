"""An event loop that empties the accept queue whenever it looks at it.

uvloop (libuv) takes one new connection per turn of the event loop. On a replica busy with a
reconnect storm a turn lasts milliseconds, so it accepted a few hundred connections a second while
thousands arrived: the kernel's accept queue (somaxconn) filled and stayed full, and every
connection beyond it was dropped and retried by the client 1, 3, 7 s later. Measured
(`python -m bench storm`, `ss -ltn`): replica B's queue sat at 4,096 for six seconds, with 25,000
listen overflows per storm.

asyncio's own loop accepts up to `backlog` connections each time the listening socket is readable;
this loop does the same on uvloop: a plain listening socket, a reader callback that accepts until
the queue is empty (at most `backlog` per turn), and each accepted socket handed to uvloop
(`connect_accepted_socket`), so the connections themselves keep uvloop's fast transports. The
work per connection is unchanged; the clients wait in order in the server's queue instead of
being dropped, and arrivals accepted together share the server's batched round trips.

Taking everyone at once has a cost of its own: a replica then serves thousands of new connections
side by side, each a little at a time, and the first to arrive is back no sooner than the last.
So at most `ACCEPT_OPENING_LIMIT` connections are opening at once (accepted, not yet through
their first exchange: a websocket's first frame handled, an HTTP request read); the others wait,
accepted and untouched, first come first served. A connection that says nothing stops counting
after `ACCEPT_OPENING_SECONDS`.

Only plain TCP servers on a host and port go this way (what `vonix serve` runs); TLS, Unix
sockets and servers on a given socket use uvloop's `create_server` unchanged.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from server.observability.logging import get_logger

log = get_logger("vonix.accept")

# Out of file descriptors or buffers: stop accepting for a moment instead of spinning on an error.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRY_AFTER_SECONDS = 1.0
# The settings' defaults (ACCEPT_OPENING_LIMIT, ACCEPT_OPENING_SECONDS), for a loop nobody configured.
OPENING_LIMIT = 256  # connections between accept and their first exchange, at once
OPENING_SECONDS = 2.0  # after that a connection stops counting as opening, whatever it does


class EagerServer:
    """The part of `asyncio.Server` uvicorn uses: `sockets`, `close`, `wait_closed`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol_factory: Callable[[], asyncio.Protocol],
                 listeners: list[socket.socket], backlog: int, *, opening_limit: int = OPENING_LIMIT,
                 opening_seconds: float = OPENING_SECONDS) -> None:
        self._loop = loop
        self._factory = protocol_factory
        self._listeners = listeners
        self._backlog = backlog
        self._serving = False
        self.opening_limit = opening_limit
        self.opening_seconds = opening_seconds
        self._opening = 0  # handed to uvloop, first exchange not done yet
        self._timers: dict[object, asyncio.TimerHandle] = {}  # transport -> its opening deadline
        self._waiting: deque[socket.socket] = deque()  # accepted, waiting for an opening slot
        # Sockets (by fd) being handed to uvloop, and those of them that said `opened` already: a
        # connection can speak before its handover finishes. Keyed by fd, not by transport, so a
        # connection telling after its deadline is simply ignored (nothing kept for it).
        self._handing: set[int] = set()
        self._told_early: set[int] = set()
        self.accepted = 0  # connections taken off the queue (tests, stats)
        self.most_opening = 0  # the most opening at once (tests, stats)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._listeners)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    def start(self) -> None:
        self._serving = True
        for listener in self._listeners:
            self._loop.add_reader(listener.fileno(), self._accept_ready, listener)

    def close(self) -> None:
        if not self._listeners:
            return
        self._serving = False
        for listener in self._listeners:
            self._loop.remove_reader(listener.fileno())
            listener.close()
        self._listeners = []
        while self._waiting:  # accepted, never served: the client reconnects elsewhere
            self._waiting.popleft().close()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._handing.clear()
        self._told_early.clear()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def opening(self) -> int:
        return self._opening

    def opened(self, transport: object) -> None:
        """The connection on `transport` is through its first exchange: the next may open."""
        timer = self._timers.pop(transport, None)
        if timer is not None:
            timer.cancel()
            self._release()
            return
        fd = _fileno(transport)
        if fd in self._handing:  # its handover has not finished: released when it does
            self._told_early.add(fd)
        # otherwise its deadline already released it (or it was told before): nothing to do

    def _release(self) -> None:
        self._opening -= 1
        while self._waiting and self._opening < self.opening_limit:
            self._hand_over(self._waiting.popleft())

    async def wait_closed(self) -> None:
        """Connections already accepted are uvicorn's to close (as with uvloop's own server)."""

    def _accept_ready(self, listener: socket.socket) -> None:
        for _ in range(self._backlog):
            try:
                conn, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    log.warning("accept_paused", error=exc.__class__.__name__, errno=exc.errno,
                                seconds=RETRY_AFTER_SECONDS)
                    self._loop.remove_reader(listener.fileno())
                    self._loop.call_later(RETRY_AFTER_SECONDS, self._resume, listener)
                    return
                continue  # the peer gave up before we took it (ECONNABORTED and the like)
            self.accepted += 1
            if self._opening >= self.opening_limit:
                self._waiting.append(conn)
            else:
                self._hand_over(conn)

    def _resume(self, listener: socket.socket) -> None:
        if self._serving and listener in self._listeners:
            self._loop.add_reader(listener.fileno(), self._accept_ready, listener)

    def _hand_over(self, conn: socket.socket) -> None:
        """uvloop wraps the socket in its transport and schedules `connection_made` at once; its
        coroutine then only waits for that. It is driven here, by a callback on what it waits
        for, instead of by a task per connection."""
        conn.setblocking(False)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self._opening += 1
        self.most_opening = max(self.most_opening, self._opening)
        fd = conn.fileno()  # the transport's too: uvloop wraps this socket, it does not dup it
        self._handing.add(fd)
        handing = self._loop.connect_accepted_socket(self._factory, conn)
        self._step(handing, conn, fd)

    def _step(self, handing: Coroutine[Any, Any, Any], conn: socket.socket, fd: int, *,
              first: bool = True) -> None:
        try:
            waiting = handing.send(None)
        except StopIteration as done:
            self._handing.discard(fd)
            transport = done.value[0]  # (transport, protocol): opening until its first exchange
            if fd in self._told_early:
                self._told_early.discard(fd)
                self._release()
            else:
                self._timers[transport] = self._loop.call_later(self.opening_seconds, self._expire, transport)
            return
        except Exception as exc:
            log.debug("accept_handover_failed", error=exc.__class__.__name__)
            self._handing.discard(fd)
            self._told_early.discard(fd)
            if first:  # uvloop never took the socket: it is still ours to close
                conn.close()
            self._release()  # later, the transport closed it itself
            return
        waiting.add_done_callback(lambda _done: self._step(handing, conn, fd, first=False))

    def _expire(self, transport: object) -> None:
        if self._timers.pop(transport, None) is not None:
            self._release()


def _fileno(transport: Any) -> int:
    sock = transport.get_extra_info("socket")
    return sock.fileno() if sock is not None else -1


def bind(host: str | None, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address of `host`, as asyncio's `create_server` makes them."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
            listener.setblocking(False)
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


class EagerAcceptLoop(uvloop.Loop):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.eager_servers: list[EagerServer] = []
        self.opening_limit = OPENING_LIMIT
        self.opening_seconds = OPENING_SECONDS

    def limit_opening(self, limit: int, seconds: float) -> None:
        """The settings' limits. uvicorn makes the loop from an import path, so they are given to
        the running loop before its servers exist (`server/ops/drain.py`), and to any already made."""
        self.opening_limit, self.opening_seconds = limit, seconds
        for server in self.eager_servers:
            server.opening_limit, server.opening_seconds = limit, seconds

    def opened(self, transport: object) -> None:
        """A connection is through its first exchange (`server/ws_protocol.py` tells)."""
        for server in self.eager_servers:
            server.opened(transport)

    async def create_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], asyncio.Protocol], host: Any = None, port: Any = None,
            **options: Any) -> Any:
        plain = set(options) <= {"backlog", "ssl"} and options.get("ssl") is None and isinstance(port, int)
        if not plain or not (host is None or isinstance(host, str)):
            return await super().create_server(protocol_factory, host, port, **options)
        backlog = int(options.get("backlog", 100))
        server = EagerServer(self, protocol_factory, bind(host, port, backlog), backlog,
                             opening_limit=self.opening_limit, opening_seconds=self.opening_seconds)
        server.start()
        self.eager_servers.append(server)
        return server


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's loop factory (`Config(loop="server.eager_accept:new_event_loop")`)."""
    return EagerAcceptLoop()
