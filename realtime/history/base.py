"""The history interface: publish with an offset, append to a bounded window, recover a gap.

Publishing goes through history (not straight to the broker) because the offset must be assigned
atomically with appending and publishing: in Redis one Lua script does all three, so offsets are
contiguous and subscribers receive them in order. Persisted channels bring their offset from the
database (the source of truth); Redis then only orders and caches them.

Broker payloads are `b"<offset> <publish-ts>\\n" + frame`: the node reads the header once per
replica (recovery de-duplication, latency metric) and hands the frame bytes to subscribers as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True, slots=True)
class FrameParts:
    """A message push split around its offset and epoch, so Lua can assemble it without JSON."""

    head: bytes  # {"op":"message","channel":"room:x","offset":
    middle: bytes  # ,"epoch":"
    tail: bytes  # ","data":...,"from":...,"ts":...}

    def build(self, offset: int, epoch: str) -> bytes:
        return b"%s%d%s%s%s" % (self.head, offset, self.middle, epoch.encode(), self.tail)

    @classmethod
    def message(cls, channel: str, data: Any, sender: dict[str, Any] | None, ts: float,
                state: dict[str, Any] | None = None) -> FrameParts:
        """`state`: what later events changed (edited, deleted, reactions), when read back from storage."""
        fields = {"data": data, "from": sender, "ts": round(ts, 3)}
        if state:
            fields.update(state)
        rest = orjson.dumps(fields)
        return cls(b'{"op":"message","channel":' + orjson.dumps(channel) + b',"offset":', b',"epoch":"',
                   b'",' + rest[1:])


@dataclass(frozen=True, slots=True)
class Published:
    offset: int
    epoch: str


def envelope(offset: int | None, ts: float, frame: bytes) -> bytes:
    return b"%s %.6f\n%s" % (b"-" if offset is None else b"%d" % offset, ts, frame)


def open_envelope(payload: bytes) -> tuple[int | None, float, bytes]:
    header, _, frame = payload.partition(b"\n")
    offset_raw, _, ts_raw = header.partition(b" ")
    offset = None if offset_raw == b"-" else int(offset_raw)
    return offset, float(ts_raw or 0), frame


class History(Protocol):
    async def publish(self, channel: str, parts: FrameParts) -> Published:
        """Assign the next offset, append to the window, publish to the broker (ephemeral channels)."""
        ...

    async def publish_stored(self, stored: Sequence[tuple[str, FrameParts, int, str]]) -> set[str]:
        """Publish committed messages (channel, parts, offset, epoch) in this order, in one go: the
        offset comes from the database (the source of truth); the history orders and caches it.
        Returns the channels where a message waits for a missing offset (see `release_stale`)."""
        ...

    async def release_stale(self, channel: str) -> float | None:
        """Publish what waited too long for a missing offset in `channel`; the seconds until the
        next waiting message is due, or None when nothing waits."""
        ...

    async def skip_to(self, channel: str, offset: int) -> None:
        """Offsets up to `offset` of a stored channel were delivered without this history (its
        publish failed): later ones must not wait for them."""
        ...

    async def publish_control(self, channel: str, frame: bytes) -> None:
        """Publish an ephemeral push (join/leave/typing): no offset, not stored."""
        ...

    async def recover(self, channel: str, since: int, limit: int) -> list[tuple[int, bytes]] | None:
        """Frames with offsets since+1.. in order, or None when the window no longer covers the gap."""
        ...

    async def recover_many(self, requests: Sequence[tuple[str, int, int]]) -> list[list[tuple[int, bytes]] | None]:
        """`recover` for many (channel, since, limit) in one round trip (a reconnect storm)."""
        ...

    async def position(self, channel: str) -> Published:
        """Current last offset and epoch of an ephemeral channel (creates the epoch if new)."""
        ...


def create_history(redis: Any | None, broker: Any, *, size: int = 1000, ttl: int = 86400,
                   prefix: str = "vonix:") -> History:
    if redis is None:
        from realtime.history.memory import MemoryHistory

        return MemoryHistory(broker, size=size, ttl=ttl)
    from realtime.history.redis import RedisHistory

    return RedisHistory(redis.publisher, size=size, ttl=ttl, prefix=prefix)
