"""One client connection: identity, subscriptions, a bounded outbound queue and its writer.

`push` never blocks and never does JSON work: it appends ready-made bytes. The writer joins
whatever is queued with `\\n` into a single websocket frame (after an optional coalescing pause),
so a burst costs one send call instead of one per message. When the queue exceeds its byte limit
the consumer is too slow: it is disconnected with SLOW_CONSUMER rather than slowing anyone else or
growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from realtime import errors
from realtime.errors import Disconnect
from realtime.logs import get_logger
from realtime.transport import Transport

log = get_logger("vonix.ws")


@dataclass
class ConnUser:
    user_id: int
    username: str
    role: str
    kind: str = "user"  # user | bot
    session_id: str | None = None
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None  # access token expiry (unix time); None: no expiry (bot tokens)

    def public(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self.username}


@dataclass
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


class Connection:
    __slots__ = ("_closed", "_queue", "_queued_bytes", "_wake", "_writer", "close_task", "coalesce", "conn_id",
                 "limiter",
                 "max_queue_bytes", "on_closed", "recovering", "rejections", "subscriptions", "transport",
                 "typing_at", "user")

    def __init__(
        self,
        conn_id: str,
        transport: Transport,
        *,
        max_queue_bytes: int,
        coalesce: float,
        limiter: TokenBucket,
        on_closed: Callable[[Connection, Disconnect | None], None],
    ) -> None:
        self.conn_id = conn_id
        self.transport = transport
        self.user: ConnUser | None = None
        self.subscriptions: set[str] = set()
        self.recovering: dict[str, list[tuple[int, bytes]]] = {}
        self.typing_at: dict[str, float] = {}
        self.max_queue_bytes = max_queue_bytes
        self.coalesce = coalesce
        self.limiter = limiter
        self.rejections = 0
        self.on_closed = on_closed
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        self.close_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.conn_id}")

    def push(self, frame: bytes) -> None:
        """Queue a ready frame. O(1), no awaits; a full queue disconnects the slow consumer."""
        if self._closed:
            return
        self._queue.append(frame)
        self._queued_bytes += len(frame)
        if self._queued_bytes > self.max_queue_bytes:
            self.disconnect(errors.SLOW_CONSUMER)
            return
        self._wake.set()

    def push_recoverable(self, channel: str, offset: int, frame: bytes) -> None:
        """Live message on a channel that may be mid-recovery: buffer it until recovery is sent."""
        buffered = self.recovering.get(channel)
        if buffered is not None:
            buffered.append((offset, frame))
        else:
            self.push(frame)

    async def _write_loop(self) -> None:
        transport = self.transport
        try:
            while True:
                await self._wake.wait()
                if self.coalesce and not self._closed:
                    await asyncio.sleep(self.coalesce)
                self._wake.clear()
                batch, self._queue = self._queue, []
                self._queued_bytes = 0
                if batch:
                    payload = batch[0] if len(batch) == 1 else b"\n".join(batch)
                    await transport.send(payload.decode())
                if self._closed and not self._queue:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send
            log.debug("ws_send_failed", conn_id=self.conn_id, error=exc.__class__.__name__)
            self._queue.clear()
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
        self.close_task = asyncio.get_running_loop().create_task(self._shutdown(reason))

    async def _shutdown(self, reason: Disconnect) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            if self._queue:
                self._wake.set()
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(writer), timeout=1.0)
            writer.cancel()
        with contextlib.suppress(Exception):
            await self.transport.close(reason.code, reason.reason)

    async def flush_and_close(self, reason: Disconnect, wait: float = 1.0) -> None:
        """Used by the graceful drain: queued frames go out (bounded), then the close code."""
        self.disconnect(reason)
        if self.close_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.close_task), timeout=wait + 1)

    def _mark_closed(self, reason: Disconnect | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if reason is None:  # transport already gone: nothing more can be sent
            self._queue.clear()
            self._queued_bytes = 0
            writer = self._writer
            if writer is not None and writer is not asyncio.current_task():
                writer.cancel()
        self.on_closed(self, reason)

    def finished(self) -> None:
        """The transport ended (peer closed): release everything."""
        self._mark_closed(None)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes
