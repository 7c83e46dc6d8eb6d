"""Publish idempotency for ephemeral channels: a repeated (user, nonce) within 24 h returns the
first offset and publishes nothing. Persisted channels get the same guarantee from the database.

In Redis every call touches one key (`SET NX`, `GET`, `SET`), so Redis Cluster needs nothing more:
each key goes to its own slot's node (a nonce holding braces only picks which slot that is).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol

TTL = 24 * 3600


class Nonces(Protocol):
    async def claim(self, user_id: int, nonce: str) -> int | None:
        """None when the nonce is new (now reserved), else the offset it got the first time (-1: pending)."""
        ...

    async def settle(self, user_id: int, nonce: str, offset: int) -> None: ...


class MemoryNonces:
    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[int, str], tuple[int, float]] = OrderedDict()
        self.capacity = capacity

    async def claim(self, user_id: int, nonce: str) -> int | None:
        key = (user_id, nonce)
        now = time.monotonic()
        found = self._seen.get(key)
        if found is not None and found[1] > now:
            return found[0]
        self._seen[key] = (-1, now + TTL)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return None

    async def settle(self, user_id: int, nonce: str, offset: int) -> None:
        self._seen[(user_id, nonce)] = (offset, time.monotonic() + TTL)


class RedisNonces:
    def __init__(self, client: Any, prefix: str = "vonix:") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, user_id: int, nonce: str) -> str:
        return f"{self.prefix}nonce:{user_id}:{nonce}"

    async def claim(self, user_id: int, nonce: str) -> int | None:
        key = self._key(user_id, nonce)
        if await self.client.set(key, -1, nx=True, ex=TTL):
            return None
        value = await self.client.get(key)
        return int(value) if value is not None else -1

    async def settle(self, user_id: int, nonce: str, offset: int) -> None:
        await self.client.set(self._key(user_id, nonce), offset, ex=TTL)


def create_nonces(redis: Any | None, prefix: str = "vonix:") -> Nonces:
    return MemoryNonces() if redis is None else RedisNonces(redis.commands, prefix)
