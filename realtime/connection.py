"""One client connection: identity, subscriptions, a bounded outbound queue and its writer.

`push` never blocks and never does JSON work: it appends ready-made bytes. When the coalescing
window ends (one shared timer, see `Flusher`), whatever is queued is joined with `\\n` into a
single websocket frame and sent, so a burst costs one send call instead of one per message. When
the queue exceeds its byte limit the consumer is too slow: it is disconnected with SLOW_CONSUMER
rather than slowing anyone else or growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

from realtime import errors
from realtime.errors import Disconnect
from realtime.logs import get_logger
from realtime.transport import Transport

log = get_logger("vonix.ws")


@dataclass(slots=True)  # one per connection: no instance dict
class ConnUser:
    user_id: int
    username: str
    role: str
    kind: str = "user"  # user | bot
    session_id: str | None = None
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None  # access token expiry (unix time); None: no expiry (bot tokens)
    # {name, colour, badge} of a rank an admin gave the member: shown beside their name in chat
    rank: dict[str, Any] | None = None
    game_server_id: int | None = None  # a game server's bot signed in with its key (`vxs_…`)

    def public(self) -> dict[str, Any]:
        if self.rank is None:
            return {"id": self.user_id, "username": self.username}
        return {"id": self.user_id, "username": self.username, "rank": self.rank}


# Who a connection that has not signed in is while it follows public channels (`status:`): no
# account, no presence, nothing but reading what the server publishes for everyone.
GUEST = ConnUser(user_id=0, username="", role="guest", kind="guest")


@dataclass(slots=True)  # one per connection: no instance dict
class TokenBucket:
    """Per-connection publish limiter: `burst` at once, then `rate` per second."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> float:
        """0 when allowed, else seconds until a token is available."""
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.burst
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Flusher:
    """Coalescing shared by the connections of a node: one timer per window, not one per connection.

    The first frame queued on an idle connection marks it dirty; when the window (`delay`) ends,
    every dirty connection sends what it queued meanwhile as one frame, synchronously. A fan-out to
    N subscribers therefore costs N appends and, per window, one timer and N send calls: no task
    switch and no timer per connection.

    A long flush goes `chunk` connections at a time, letting the event loop read in between
    (publishes, broker messages and pings keep flowing; what arrives meanwhile joins the batches of
    the connections not flushed yet), and the next window starts when the flush has finished. So
    under load the window stretches to the time a flush takes: the busier the node, the bigger the
    batches and the cheaper each message, instead of overlapping flushes of ever smaller batches.
    """

    __slots__ = ("_dirty", "_flushing", "_handle", "chunk", "delay")

    def __init__(self, delay: float, chunk: int = 256) -> None:
        self.delay = delay
        self.chunk = chunk
        self._dirty: list[Connection] = []
        self._handle: asyncio.Handle | None = None
        self._flushing = False

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if self._handle is None and not self._flushing:
            self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._handle = loop.call_later(self.delay, self.flush) if self.delay else loop.call_soon(self.flush)

    def flush(self) -> None:
        self._handle = None
        work, self._dirty = self._dirty, []
        self._flushing = True
        self._flush_from(work, 0)

    def _flush_from(self, work: list[Connection], start: int) -> None:
        end = start + self.chunk
        try:
            for conn in work[start:end]:
                conn._flush()
        finally:
            if end < len(work):
                asyncio.get_running_loop().call_soon(self._flush_from, work, end)
            else:
                self._flushing = False
                if self._dirty and self._handle is None:
                    self._schedule()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Finish, inside a task, a send coroutine that was started synchronously and then suspended
    (the transport applied backpressure): hand the future it waits on to the task, relay results
    and cancellation back into it."""
    while True:
        try:
            value = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(value)
            except StopIteration as stop:
                return stop.value


class Connection:
    __slots__ = ("_closed", "_flusher", "_queue", "_queued_bytes", "_scheduled", "_sending", "_transport_done",
                 "close_task", "coalesce", "conn_id", "inflight", "last_publish", "limiter", "max_queue_bytes",
                 "on_closed", "presence_muted", "read_limiter", "recovering", "rejections", "released", "subscriptions",
                 "transport", "typing_at", "user")

    def __init__(
        self,
        conn_id: str,
        transport: Transport,
        *,
        max_queue_bytes: int,
        coalesce: float,
        limiter: TokenBucket,
        on_closed: Callable[[Connection, Disconnect | None], None],
        flusher: Flusher | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.transport = transport
        self.user: ConnUser | None = None
        self.subscriptions: set[str] = set()
        self.recovering: dict[str, list[tuple[int, bytes]]] = {}
        self.typing_at: dict[str, float] = {}
        self.presence_muted: set[str] | None = None  # channels subscribed without presence diffs
        self.max_queue_bytes = max_queue_bytes
        self.coalesce = coalesce
        self.limiter = limiter
        self.read_limiter: TokenBucket | None = None
        self.inflight = 0  # pipelined publishes not yet stored (realtime/node.py)
        self.last_publish: asyncio.Future[Any] | None = None
        self.rejections = 0
        self.released = False  # its slot under the per-user connection cap is given back (node cleanup)
        self.on_closed = on_closed
        self._flusher = flusher if flusher is not None else Flusher(coalesce)
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._scheduled = False  # marked dirty in the flusher
        self._sending: asyncio.Future[None] | None = None  # a send the transport made wait
        self._closed = False
        self._transport_done = False  # the close frame went out, or the peer is gone
        self.close_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Kept for callers: the connection needs no task of its own (the flusher sends)."""

    def mute_presence(self, channel: str) -> None:
        """No presence diffs for this channel (bots by default): made on first use, most
        connections never need the set."""
        if self.presence_muted is None:
            self.presence_muted = set()
        self.presence_muted.add(channel)

    def hears_presence(self, channel: str) -> bool:
        return self.presence_muted is None or channel not in self.presence_muted

    def push(self, frame: bytes) -> None:
        """Queue a ready frame. O(1), no awaits; a full queue disconnects the slow consumer."""
        if self._closed:
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if self._queued_bytes > self.max_queue_bytes:
            self.disconnect(errors.SLOW_CONSUMER)
            return
        if not self._scheduled and self._sending is None:
            self._scheduled = True
            self._flusher.mark(self)

    def push_recoverable(self, channel: str, offset: int, frame: bytes) -> None:
        """Live message on a channel that may be mid-recovery: buffer it until recovery is sent."""
        buffered = self.recovering.get(channel)
        if buffered is not None:
            buffered.append((offset, frame))
        else:
            self.push(frame)

    def _take(self) -> bytes:
        batch, self._queue = self._queue, []
        self._queued_bytes = 0
        return batch[0] if len(batch) == 1 else b"\n".join(batch)

    def _flush(self) -> None:
        """The coalescing window ended: send what is queued as one frame, synchronously when the
        transport can take it now; otherwise a task finishes the send and drains the rest."""
        self._scheduled = False
        if self._sending is not None or self._transport_done or not self._queue:
            return
        data = self._take()
        try:
            if self.transport.write(data):
                return
        except Exception as exc:  # the peer went away mid-send
            self._send_failed(exc)
            return
        coro = self.transport.send(data)
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:  # the peer went away mid-send
            self._send_failed(exc)
            return
        self._sending = asyncio.ensure_future(self._finish(coro, yielded))

    async def _finish(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        try:
            await _resume(coro, yielded)
            while self._queue and not self._transport_done:
                await self.transport.send(self._take())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._send_failed(exc)
        finally:
            self._sending = None

    def _send_failed(self, exc: Exception) -> None:
        log.debug("ws_send_failed", conn_id=self.conn_id, error=exc.__class__.__name__)
        self._queue.clear()
        self._queued_bytes = 0
        self._transport_done = True
        self._mark_closed(None)

    def disconnect(self, reason: Disconnect, *, flush: bool = True) -> None:
        """Close from anywhere (sync): accept no more frames, send what is queued (unless the
        consumer is too slow for that), then close the socket with the documented code."""
        if self._closed:
            return
        if reason is errors.SLOW_CONSUMER:
            flush = False
        if not flush:
            self._queue.clear()
            self._queued_bytes = 0
        self._mark_closed(reason)
        # Run the close in place: with nothing left to wait for (the usual case, and every one of
        # a drain's thousands) it finishes here, with no task; otherwise a task finishes it.
        shutdown = self._shutdown(reason)
        try:
            waiting = shutdown.send(None)
        except StopIteration:
            return
        self.close_task = asyncio.ensure_future(_resume(shutdown, waiting))

    async def _shutdown(self, reason: Disconnect) -> None:
        if self._sending is None and self._queue:
            self._flush()  # most often the transport takes it at once: nothing to wait for
        if self._sending is not None or (self._queue and not self._transport_done):
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._drain(), timeout=1.0)
        sending = self._sending
        if sending is not None and not sending.done():
            sending.cancel()
        self._transport_done = True
        with contextlib.suppress(Exception):
            await self.transport.close(reason.code, reason.reason)

    async def _drain(self) -> None:
        """Queued frames go out before the close frame (bounded by the caller)."""
        while not self._transport_done:
            sending = self._sending
            if sending is not None:
                await asyncio.shield(sending)
            elif self._queue:
                await self.transport.send(self._take())
            else:
                return

    def _mark_closed(self, reason: Disconnect | None) -> None:
        if self._closed:
            return
        self._closed = True
        if reason is None:  # transport already gone: nothing more can be sent
            self._gone()
        self.on_closed(self, reason)

    def _gone(self) -> None:
        self._transport_done = True
        self._queue.clear()
        self._queued_bytes = 0
        sending = self._sending
        if sending is not None and not sending.done() and sending is not asyncio.current_task():
            sending.cancel()

    def finished(self) -> None:
        """The transport ended (peer closed): release everything."""
        self._mark_closed(None)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes
