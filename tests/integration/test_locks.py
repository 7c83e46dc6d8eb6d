"""The lock contract, the same for the in-process and the Redis implementation (real Redis and Redis
Cluster), and a Redis outage that makes `acquire` answer None quickly instead of hanging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from server.infra.locks import KEY_PREFIX, Lock, MemoryLock, RedisLock, held, make_lock
from server.infra.redis import RedisClients
from server.observability.metrics import Metrics
from tests.conftest import flushed_cluster
from tests.support.services import RedisServer, free_port


@pytest.fixture(params=["memory", "redis", "cluster"])
async def lock(request: pytest.FixtureRequest) -> AsyncIterator[Lock]:
    if request.param == "memory":
        yield MemoryLock()
        return
    if request.param == "cluster":
        redis = RedisClients(flushed_cluster(request.getfixturevalue("redis_cluster_service")), Metrics(),
                             timeout=0.5, cluster=True)
    else:
        service: RedisServer = request.getfixturevalue("redis_service")
        redis = RedisClients(service.url, Metrics(), timeout=0.5)
    await redis.commands.flushall()
    yield make_lock(redis)
    await redis.close()


async def test_only_one_holder_and_only_the_holder_releases(lock: Lock) -> None:
    token = await lock.acquire("job", 5)
    assert token is not None
    assert await lock.acquire("job", 5) is None
    assert await lock.acquire("other-job", 5) is not None, "keys are independent"
    assert await lock.release("job", "not-the-token") is False
    assert await lock.acquire("job", 5) is None, "a wrong token must not free the lock"
    assert await lock.release("job", token) is True
    assert await lock.release("job", token) is False
    assert await lock.acquire("job", 5) is not None


async def test_expiry_frees_the_lock_and_the_old_token_is_powerless(lock: Lock) -> None:
    old = await lock.acquire("job", 0.2)
    assert old is not None
    await asyncio.sleep(0.3)
    new = await lock.acquire("job", 5)
    assert new is not None, "an expired lock can be taken"
    assert await lock.extend("job", old, 5) is False
    assert await lock.release("job", old) is False, "the old holder cannot free the new holder's lock"
    assert await lock.acquire("job", 5) is None


async def test_extend_keeps_the_lock(lock: Lock) -> None:
    token = await lock.acquire("job", 0.3)
    assert token is not None
    await asyncio.sleep(0.15)
    assert await lock.extend("job", token, 0.5) is True
    await asyncio.sleep(0.3)
    assert await lock.acquire("job", 5) is None, "still held thanks to the extension"


async def test_held_extends_while_the_body_runs_and_releases_after(lock: Lock) -> None:
    # A 1 s TTL (extended every third of it): 0.3 s left a loaded machine's late extension no slack.
    async with held(lock, "long-job", 1.0) as acquired:
        assert acquired
        await asyncio.sleep(2.2)  # more than twice the TTL
        assert await lock.acquire("long-job", 5) is None
        async with held(lock, "long-job", 1.0) as second:
            assert not second
    token = await lock.acquire("long-job", 5)
    assert token is not None, "released on exit"


async def test_redis_lock_uses_prefixed_keys_with_expiry(redis_service: RedisServer) -> None:
    redis = RedisClients(redis_service.url, Metrics(), timeout=0.5)
    try:
        await redis.commands.flushall()
        token = await RedisLock(redis).acquire("maintenance:cleanup", 30)
        assert await redis.commands.get(KEY_PREFIX + "maintenance:cleanup") == token.encode()
        assert 29_000 < await redis.commands.pttl(KEY_PREFIX + "maintenance:cleanup") <= 30_000
    finally:
        await redis.close()


@pytest.mark.parametrize("outage", ["refused", "silent"])
async def test_redis_down_acquire_answers_none_without_hanging(outage: str) -> None:
    """Refused: nothing listens. Silent: a peer accepts and never answers (a hung Redis)."""
    silent = None
    port = free_port()
    if outage == "silent":
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(-1)
            writer.close()

        silent = await asyncio.start_server(swallow, "127.0.0.1", port)
    redis = RedisClients(f"redis://127.0.0.1:{port}/0", Metrics(), timeout=0.3)
    lock = RedisLock(redis)
    try:
        started = time.monotonic()
        assert await lock.acquire("maintenance:cleanup", 30) is None
        # Bounded by the client: connect handshake and one retry, each within REDIS_TIMEOUT.
        assert time.monotonic() - started < 2.5
        if outage == "refused":
            assert await lock.release("maintenance:cleanup", "token") is False
            assert await lock.extend("maintenance:cleanup", "token", 30) is False
            async with held(lock, "maintenance:cleanup", 30) as acquired:
                assert not acquired
    finally:
        await redis.close()
        if silent is not None:
            silent.close()
            await silent.wait_closed()
