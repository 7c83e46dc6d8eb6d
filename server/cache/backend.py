"""The shared level behind L1: one small interface, an in-process and a Redis implementation.

The shared level stores encoded entries for every replica (L2) and carries invalidations to the
other replicas' L1. Embedded mode (one process) has nothing to share: `LocalOnly` answers every
fetch with a miss and invalidation stays local. Scaled mode uses `RedisShared` (server/cache/redis.py).

Race safety: `fetch` returns a *token* (the shared clock when the read happened); `store` writes
only if no key or tag of the entry was invalidated since that token, so a load that raced with an
invalidation cannot put the old value back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson


@dataclass(frozen=True)
class Invalidation:
    keys: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.keys or self.tags or self.prefixes)

    def encode(self, origin: str) -> bytes:
        return orjson.dumps({"o": origin, "k": self.keys, "t": self.tags, "p": self.prefixes})

    @staticmethod
    def decode(payload: bytes) -> tuple[str, Invalidation]:
        data = orjson.loads(payload)
        return str(data.get("o", "")), Invalidation(
            tuple(data.get("k") or ()), tuple(data.get("t") or ()), tuple(data.get("p") or ()))


@dataclass(frozen=True, slots=True)
class Fetched:
    payload: bytes | None
    token: int | None  # None: the shared level could not be asked


class SharedLevel(Protocol):
    name: str

    @property
    def coherent(self) -> bool:
        """True while invalidations made on other replicas reach this one."""

    async def start(self, on_remote: Callable[[Invalidation], None], on_resync: Callable[[], None]) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, key: str) -> Fetched: ...

    async def store(self, key: str, payload: bytes, ttl: float, tags: Sequence[str], token: int | None) -> bool | None:
        """True stored; False refused (invalidated since `token`); None: the level is unavailable."""

    async def invalidate(self, invalidation: Invalidation) -> None:
        """Drop from the shared level and tell the other replicas. Never raises."""

    def status(self) -> dict[str, Any]: ...


class LocalOnly:
    """Embedded mode: one process, so L1 is the whole cache and every invalidation is local."""

    name = "none"

    @property
    def coherent(self) -> bool:
        return True

    async def start(self, on_remote: Callable[[Invalidation], None], on_resync: Callable[[], None]) -> None:
        return None

    async def close(self) -> None:
        return None

    async def fetch(self, key: str) -> Fetched:
        return Fetched(None, None)

    async def store(self, key: str, payload: bytes, ttl: float, tags: Sequence[str], token: int | None) -> bool | None:
        return True

    async def invalidate(self, invalidation: Invalidation) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"level": "none", "coherent": True}
