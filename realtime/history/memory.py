"""Embedded-mode history: an in-process ring per channel; delivery through the memory broker.

The epoch is random per process: after a restart ephemeral offsets start again and clients learn
from the new epoch that their gap cannot be filled from here.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from realtime.history.base import FrameParts, Published, envelope


@dataclass
class _Ring:
    epoch: str
    last: int = 0
    frames: deque[tuple[int, bytes]] = field(default_factory=deque)
    touched: float = field(default_factory=time.monotonic)


class MemoryHistory:
    def __init__(self, broker: object, *, size: int = 1000, ttl: int = 86400) -> None:
        self.broker = broker
        self.size = size
        self.ttl = ttl
        self._rings: dict[str, _Ring] = {}

    def _ring(self, channel: str) -> _Ring:
        ring = self._rings.get(channel)
        if ring is None:
            ring = self._rings[channel] = _Ring(epoch=secrets.token_hex(4), frames=deque(maxlen=self.size))
            if len(self._rings) % 256 == 0:
                self._expire()
        ring.touched = time.monotonic()
        return ring

    def _expire(self) -> None:
        horizon = time.monotonic() - self.ttl
        for name in [n for n, r in self._rings.items() if r.touched < horizon]:
            del self._rings[name]

    async def publish(self, channel: str, parts: FrameParts) -> Published:
        ring = self._ring(channel)
        await self._append(channel, ring, ring.last + 1, parts)
        return Published(ring.last, ring.epoch)

    async def publish_stored(self, stored: Sequence[tuple[str, FrameParts, int, str]]) -> set[str]:
        for channel, parts, offset, epoch in stored:
            ring = self._ring(channel)
            ring.epoch = epoch
            if offset > ring.last:  # else already published (a persisted duplicate): nothing to do
                await self._append(channel, ring, offset, parts)
        return set()  # one process commits in order: nothing ever waits for an offset

    async def release_stale(self, channel: str) -> float | None:
        return None

    async def _append(self, channel: str, ring: _Ring, offset: int, parts: FrameParts) -> None:
        ring.last = offset
        frame = parts.build(offset, ring.epoch)
        ring.frames.append((offset, frame))
        await self.broker.publish(channel, envelope(offset, time.time(), frame))  # type: ignore[attr-defined]

    async def skip_to(self, channel: str, offset: int) -> None:
        return None  # in-process: its publish cannot fail, so it never waits for an offset

    async def publish_control(self, channel: str, frame: bytes) -> None:
        await self.broker.publish(channel, envelope(None, time.time(), frame))  # type: ignore[attr-defined]

    async def recover_many(self, requests: Sequence[tuple[str, int, int]]) -> list[list[tuple[int, bytes]] | None]:
        return [await self.recover(channel, since, limit) for channel, since, limit in requests]

    async def recover(self, channel: str, since: int, limit: int) -> list[tuple[int, bytes]] | None:
        ring = self._rings.get(channel)
        if ring is None:
            return None if since > 0 else []
        if since >= ring.last:
            return []
        if not ring.frames or ring.frames[0][0] > since + 1:
            return None
        missed = [item for item in ring.frames if item[0] > since]
        return missed[:limit]

    async def position(self, channel: str) -> Published:
        ring = self._ring(channel)
        return Published(ring.last, ring.epoch)
