"""Named locks with expiry, so that a job runs on exactly one replica at a time.

A lock is a key plus a random token: `acquire` returns the token (or None when someone else holds
the key, or the lock store cannot be reached), `release` and `extend` act only while the token
still matches, so a holder whose lock expired can never free or prolong a lock that another
replica took over. The expiry bounds how long a crashed holder blocks everyone else.

Two implementations behind one interface: `MemoryLock` for embedded mode (one process, no Redis)
and `RedisLock` (`SET NX PX` plus compare-and-delete / compare-and-expire scripts) for replicas
sharing a Redis. `make_lock` picks one by whether Redis is configured. When Redis is unreachable
the Redis lock answers None instead of waiting: the clients' short timeouts bound every call, and
skipping one run is always safer than two replicas running it together.

Every Redis call and script touches the one key of its lock, so Redis Cluster needs no hash tags:
the call goes to the node owning that key. (A lock is as safe as that node: when its master fails
before the replica received the key, a second replica may take the lock once; the TTL-bounded
jobs it guards tolerate a rare overlap, as the `held` docstring says.)
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Protocol

from server.infra.redis import UNAVAILABLE, RedisClients
from server.observability.logging import get_logger

log = get_logger("vonix.locks")

KEY_PREFIX = "vonix:lock:"

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class Lock(Protocol):
    """A named mutual-exclusion lock with expiry; every call is bounded in time."""

    async def acquire(self, key: str, ttl: float) -> str | None:
        """Take `key` for `ttl` seconds; the token proves ownership, None means not taken."""
        ...

    async def release(self, key: str, token: str) -> bool:
        """Free `key` if `token` still owns it; False when it expired or was taken over."""
        ...

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        """Reset the expiry of `key` to `ttl` seconds if `token` still owns it."""
        ...


def _token() -> str:
    return secrets.token_hex(16)


class MemoryLock:
    """In-process locks for embedded mode, where there is only one replica to exclude."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    def _owner(self, key: str) -> str | None:
        held = self._held.get(key)
        if held is None:
            return None
        token, expires = held
        if expires <= time.monotonic():
            del self._held[key]
            return None
        return token

    async def acquire(self, key: str, ttl: float) -> str | None:
        if self._owner(key) is not None:
            return None
        token = _token()
        self._held[key] = (token, time.monotonic() + ttl)
        return token

    async def release(self, key: str, token: str) -> bool:
        if self._owner(key) != token:
            return False
        del self._held[key]
        return True

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        if self._owner(key) != token:
            return False
        self._held[key] = (token, time.monotonic() + ttl)
        return True


class RedisLock:
    """Locks shared by every replica, on the Redis command pool."""

    def __init__(self, redis: RedisClients) -> None:
        self._client = redis.commands
        self._release = self._client.register_script(_RELEASE)
        self._extend = self._client.register_script(_EXTEND)

    async def acquire(self, key: str, ttl: float) -> str | None:
        token = _token()
        try:
            taken = await self._client.set(KEY_PREFIX + key, token, nx=True, px=_ms(ttl))
        except UNAVAILABLE as exc:
            log.warning("lock_unavailable", key=key, error=f"{exc.__class__.__name__}: {exc}")
            return None
        return token if taken else None

    async def release(self, key: str, token: str) -> bool:
        try:
            return bool(await self._release(keys=[KEY_PREFIX + key], args=[token]))
        except UNAVAILABLE as exc:
            # The key expires by itself; the next holder only waits out the TTL.
            log.warning("lock_release_failed", key=key, error=f"{exc.__class__.__name__}: {exc}")
            return False

    async def extend(self, key: str, token: str, ttl: float) -> bool:
        try:
            return bool(await self._extend(keys=[KEY_PREFIX + key], args=[token, _ms(ttl)]))
        except UNAVAILABLE as exc:
            log.warning("lock_extend_failed", key=key, error=f"{exc.__class__.__name__}: {exc}")
            return False


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def make_lock(redis: RedisClients | None) -> Lock:
    """Redis locks when Redis is configured (several replicas may run), memory locks otherwise."""
    return RedisLock(redis) if redis is not None else MemoryLock()


@contextlib.asynccontextmanager
async def held(lock: Lock, key: str, ttl: float) -> AsyncIterator[bool]:
    """Hold `key` for the body, extending it every third of `ttl` so long work keeps it.

    Yields False (and runs nothing else) when the lock was not acquired. If an extension fails
    the body continues: the work it guards must itself tolerate a rare overlap (maintenance
    batches are transactional), while aborting on a Redis blip would starve the job.
    """
    token = await lock.acquire(key, ttl)
    if token is None:
        yield False
        return
    keeper = asyncio.create_task(_keep(lock, key, token, ttl), name=f"lock-keeper:{key}")
    try:
        yield True
    finally:
        keeper.cancel()
        await asyncio.wait([keeper])  # unlike `await keeper`, never swallows our own cancel
        await lock.release(key, token)


async def _keep(lock: Lock, key: str, token: str, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        if not await lock.extend(key, token, ttl):
            log.warning("lock_lost", key=key)
            return
