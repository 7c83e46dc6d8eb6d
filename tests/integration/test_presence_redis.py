"""Presence in the real Redis, shared by two RedisPresence instances playing two replicas.

Every test runs on a single Redis and on a Redis Cluster of 3 masters + 3 replicas (issue 19:
each channel's keys share a hash slot, so every script runs on one shard).

Each replica has its own client (its own connection pool), as separate processes would. Most
tests share one fake clock so expiry is instant and exact; the killed-replica test uses real time
and a one-second ttl, and runs several sweepers at once to prove each leave is reported once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from realtime.presence import PresenceUnavailable, PresenceUser, create_presence
from realtime.presence.redis import RedisPresence
from tests.conftest import flushed_cluster
from tests.support.services import free_port

TTL = 45.0
ALICE = PresenceUser(1, "alice")
BOB = PresenceUser(2, "bob")
CAROL = PresenceUser(3, "carol")
INDEX = "vonix:presence:channels"

Client = aioredis.Redis | aioredis.RedisCluster
Connect = Callable[[], Client]


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["single", "cluster"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """A factory of clients to a flushed Redis or Redis Cluster, one per replica; all closed afterwards."""
    clients: list[Client] = []
    if request.param == "cluster":
        url = flushed_cluster(request.getfixturevalue("redis_cluster_service"))
    else:
        url = request.getfixturevalue("redis_service").url

    def make() -> Client:
        kind = aioredis.RedisCluster if request.param == "cluster" else aioredis.Redis
        client = kind.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        clients.append(client)
        return client

    await make().flushdb()
    yield make
    for client in clients:
        await client.aclose()


async def keys(redis: Client, pattern: str) -> list[bytes]:
    """KEYS on every master of a cluster (the cluster client asks one node by default)."""
    if isinstance(redis, aioredis.RedisCluster):
        return await redis.keys(pattern, target_nodes=aioredis.RedisCluster.PRIMARIES)  # type: ignore[no-any-return]
    return await redis.keys(pattern)  # type: ignore[no-any-return]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def replicas(connect: Connect, clock: FakeClock) -> tuple[RedisPresence, RedisPresence]:
    return (RedisPresence(connect(), ttl=TTL, clock=clock), RedisPresence(connect(), ttl=TTL, clock=clock))


async def test_a_redis_client_selects_the_redis_backend(connect: Connect) -> None:
    assert isinstance(create_presence(connect()), RedisPresence)


async def test_two_tabs_on_two_replicas_are_one_presence(replicas: tuple[RedisPresence, RedisPresence]) -> None:
    a, b = replicas
    assert await a.join("room:a", "a-tab1", ALICE) is True
    assert await b.join("room:a", "b-tab2", ALICE) is False, "second tab, other replica: no second join"
    assert await b.join("room:a", "b-conn", BOB) is True
    assert await a.users("room:a") == await b.users("room:a") == [ALICE, BOB]
    assert await a.leave("room:a", "a-tab1", ALICE.user_id) is False
    assert await a.users("room:a") == [ALICE, BOB]
    assert await b.leave("room:a", "b-tab2", ALICE.user_id) is True, "the last tab leaves once"
    assert await b.leave("room:a", "b-tab2", ALICE.user_id) is False
    assert await a.users("room:a") == [BOB]


async def test_concurrent_joins_and_leaves_report_exactly_one_edge(
    replicas: tuple[RedisPresence, RedisPresence],
) -> None:
    a, b = replicas
    tabs = [(a if i % 2 else b, f"tab{i}") for i in range(20)]
    joined = await asyncio.gather(*(p.join("room:a", conn, ALICE) for p, conn in tabs))
    assert joined.count(True) == 1
    left = await asyncio.gather(*(p.leave("room:a", conn, ALICE.user_id) for p, conn in tabs))
    assert left.count(True) == 1
    assert await a.users("room:a") == []


async def test_killed_replica_is_swept_within_seconds_and_each_leave_reported_once(connect: Connect) -> None:
    ttl = 1.0
    a = RedisPresence(connect(), ttl=ttl)
    b = RedisPresence(connect(), ttl=ttl)
    channels = [f"room:r{i}" for i in range(20)]
    for channel in channels:
        await a.join(channel, f"{channel}/alice1", ALICE)
        await a.join(channel, f"{channel}/alice2", ALICE)
        await a.join(channel, f"{channel}/bob", BOB)
        await b.join(channel, f"{channel}/carol", CAROL)
    await a.redis.aclose()  # replica A is gone: no leave, no heartbeat, ever again
    killed_at = time.monotonic()

    async def heartbeat_b() -> None:
        while True:
            await asyncio.sleep(0.2)
            await b.heartbeat([(c, f"{c}/carol") for c in channels])

    # A restarted (A'), B and a third replica all sweep at the same moments.
    sweepers = [RedisPresence(connect(), ttl=ttl), b, RedisPresence(connect(), ttl=ttl)]
    reports: Counter[tuple[str, PresenceUser]] = Counter()
    expected = {(c, u) for c in channels for u in (ALICE, BOB)}
    beating = asyncio.create_task(heartbeat_b())
    try:
        while set(reports) != expected and time.monotonic() - killed_at < 3:
            await asyncio.sleep(0.1)
            for result in await asyncio.gather(*(s.sweep() for s in sweepers)):
                reports.update(result)
        cleared_after = time.monotonic() - killed_at
        for _ in range(3):
            for result in await asyncio.gather(*(s.sweep() for s in sweepers)):
                reports.update(result)
    finally:
        beating.cancel()
        await asyncio.gather(beating, return_exceptions=True)
    assert set(reports) == expected, "CAROL's replica heartbeats: she never leaves"
    assert set(reports.values()) == {1}, "no leave reported twice"
    assert cleared_after < 2.0
    for channel in channels:
        assert await b.users(channel) == [CAROL]


async def test_heartbeats_from_one_replica_survive_sweeps_by_another(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    a, b = replicas
    await a.join("room:a", "tab1", ALICE)
    for _ in range(4):
        clock.advance(TTL * 0.6)
        assert await a.heartbeat([("room:a", "tab1")]) == []
        assert await b.sweep() == []
    assert await b.users("room:a") == [ALICE]


async def test_a_late_heartbeat_reports_the_swept_entry_and_a_rejoin_restores_it(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    a, b = replicas
    await a.join("room:a", "tab1", ALICE)
    await a.join("room:b", "tab1", ALICE)
    clock.advance(TTL + 1)
    assert sorted(await b.sweep(), key=repr) == [("room:a", ALICE), ("room:b", ALICE)]
    lost = await a.heartbeat([("room:a", "tab1"), ("room:b", "tab1")])
    assert lost == [("room:a", "tab1"), ("room:b", "tab1")]
    assert await a.join("room:a", "tab1", ALICE) is True
    assert await b.users("room:a") == [ALICE]
    clock.advance(TTL + 1)
    assert await b.sweep() == [("room:a", ALICE)], "the rejoined channel is back in the sweep index"


async def test_large_channels_are_swept_and_heartbeated_in_batches(connect: Connect, clock: FakeClock) -> None:
    a = RedisPresence(connect(), ttl=TTL, clock=clock, batch=3)
    b = RedisPresence(connect(), ttl=TTL, clock=clock, batch=3)
    channels = [f"room:c{i}" for i in range(7)]
    for channel in channels:
        for user_id in range(10):
            await a.join(channel, f"{channel}/{user_id}", PresenceUser(user_id, f"u{user_id}"))
    entries = [(c, f"{c}/{u}") for c in channels for u in range(10)]
    assert await b.heartbeat([*entries, ("room:c0", "missing")]) == [("room:c0", "missing")]
    clock.advance(TTL + 1)
    swept = await b.sweep()
    assert len(swept) == len(set(swept)) == 70
    assert await b.sweep() == []
    assert await b.redis.exists(INDEX) == 0


async def test_scripts_are_reloaded_after_redis_forgets_them(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    """A Redis restart or SCRIPT FLUSH empties the script cache; the pipelined EVALSHAs recover."""
    a, b = replicas
    await a.redis.script_flush()
    assert await a.join("room:a", "tab1", ALICE) is True
    await a.redis.script_flush()
    assert await a.heartbeat([("room:a", "tab1")]) == []
    await b.redis.script_flush()
    clock.advance(TTL + 1)
    assert await b.sweep() == [("room:a", ALICE)]
    await a.redis.script_flush()
    assert await a.register_connection(1, "c1", 1) is True
    assert await a.leave("room:a", "tab1", ALICE.user_id) is False


async def test_nothing_is_left_in_redis_after_everyone_leaves(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    a, b = replicas
    await a.join("room:a", "tab1", ALICE)
    assert len(await keys(a.redis, "vonix:presence:{room:a}:*")) == 4, "one hash tag per channel"
    await a.leave("room:a", "tab1", ALICE.user_id)
    assert await keys(a.redis, "vonix:presence:{room:a}:*") == []
    clock.advance(TTL + 1)
    assert await b.sweep() == []
    assert await keys(a.redis, "vonix:presence:*") == [], "the emptied channel left the sweep index"


async def test_connection_cap_holds_across_replicas(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    a, b = replicas
    assert [await a.register_connection(7, f"a{i}", 3) for i in range(3)] == [True] * 3
    assert await b.register_connection(7, "b0", 3) is False, "the cap counts replica A's connections"
    assert await b.register_connection(8, "b0", 3) is True, "the cap is per user"
    await a.unregister_connection(7, "a0")
    assert await b.register_connection(7, "b1", 3) is True
    assert await a.register_connection(7, "a9", 3) is False
    ttl_ms = await a.redis.pttl("vonix:conns:{7}")
    assert 0 < ttl_ms <= (TTL + 1) * 1000, "abandoned users' records vanish by themselves"


async def test_connection_cap_is_atomic_under_concurrent_registrations(
    replicas: tuple[RedisPresence, RedisPresence],
) -> None:
    a, b = replicas
    results = await asyncio.gather(*((a if i % 2 else b).register_connection(9, f"c{i}", 3) for i in range(12)))
    assert results.count(True) == 3


async def test_killed_replicas_connections_stop_counting_after_ttl(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    a, b = replicas
    await a.register_connection(7, "a-dead", 2)
    await b.register_connection(7, "b-live", 2)
    assert await b.register_connection(7, "b-new", 2) is False
    clock.advance(TTL - 1)
    await b.heartbeat_connections([(7, "b-live")])  # replica A has stopped heartbeating
    clock.advance(2)
    assert await b.register_connection(7, "b-new", 2) is True, "A's record expired"
    assert await b.register_connection(7, "b-more", 2) is False, "B's heartbeated record still counts"


async def test_heartbeats_and_releases_of_many_connections_per_user_keep_each_one(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    """Heartbeats and releases go one command per user for all their connections: each
    connection must still be renewed, and released, on its own."""
    a, b = replicas
    for user_id in (7, 8):
        assert await a.register_connections([(user_id, f"{user_id}-{i}") for i in range(4)], 5) == [True] * 4
    clock.advance(TTL - 1)
    await a.heartbeat_connections([(7, "7-0"), (8, "8-0"), (7, "7-1"), (7, "7-2"), (8, "8-1")])
    clock.advance(2)  # 7-3 and 8-2, 8-3 were not renewed: expired
    assert await b.connection_count(7) == 3 and await b.connection_count(8) == 2
    await a.unregister_connections([(7, "7-0"), (8, "8-1"), (7, "7-2")])
    assert await b.connection_count(7) == 1 and await b.connection_count(8) == 1
    assert await b.register_connections([(7, "n1"), (7, "n2"), (7, "n3"), (7, "n4"), (7, "n5")], 5) == [
        True, True, True, True, False], "the released slots are free again, the cap still holds"


async def _timed(call: Callable[[], Awaitable[object]]) -> tuple[float, Exception | None]:
    started = time.monotonic()
    try:
        await call()
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def _every_call(presence: RedisPresence) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: presence.join("room:a", "c1", ALICE),
        lambda: presence.leave("room:a", "c1", ALICE.user_id),
        lambda: presence.users("room:a"),
        lambda: presence.heartbeat([("room:a", "c1")]),
        lambda: presence.sweep(),
        lambda: presence.register_connection(1, "c1", 3),
        lambda: presence.unregister_connection(1, "c1"),
        lambda: presence.heartbeat_connections([(1, "c1")]),
    ]


@pytest.mark.parametrize("kind", ["silent", "refusing"])
async def test_unreachable_redis_fails_fast_with_presence_unavailable(kind: str) -> None:
    """With the production client settings, a Redis that never answers or refuses hangs no call."""
    from server.infra.redis import RedisClients
    from server.observability.metrics import Metrics

    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)  # the kernel completes handshakes; nobody ever reads or answers
        port = black_hole.getsockname()[1] if kind == "silent" else free_port()
        clients = RedisClients(f"redis://127.0.0.1:{port}/0", Metrics(), timeout=0.2)
        try:
            outcomes = await asyncio.gather(*(_timed(call) for call in _every_call(
                RedisPresence(clients.commands, ttl=TTL))))
        finally:
            await clients.close()
    for elapsed, error in outcomes:
        assert isinstance(error, PresenceUnavailable), error
        assert elapsed < 2.0, elapsed


async def test_a_batch_answers_each_change_as_if_applied_one_by_one(
    replicas: tuple[RedisPresence, RedisPresence], clock: FakeClock
) -> None:
    """`apply` sends one script call per channel (its changes in their order): every edge, and what
    is left, must be what the same changes one at a time give (the memory store is the model)."""
    from realtime.presence.base import PresenceChange
    from realtime.presence.memory import MemoryPresence

    a, b = replicas
    model = MemoryPresence(ttl=TTL, clock=clock)
    changes = [
        PresenceChange(True, "room:a", "a1", ALICE), PresenceChange(True, "room:b", "a1", ALICE),
        PresenceChange(True, "room:a", "a2", ALICE),  # a second tab: no edge
        PresenceChange(True, "room:a", "b1", BOB), PresenceChange(False, "room:a", "a1", ALICE),  # a2 still in
        PresenceChange(False, "room:a", "b1", BOB),  # joined and left in one batch: two edges
        PresenceChange(False, "room:c", "ghost", CAROL),  # never joined
        PresenceChange(True, "room:a", "a1", ALICE),  # back again, same connection id
        PresenceChange(True, "room:a", "a1", ALICE),  # twice: the second is no edge
        PresenceChange(False, "room:b", "a1", ALICE), PresenceChange(True, "room:c", "c1", CAROL),
    ]
    expected = await model.apply(changes)
    assert expected == [True, True, False, True, False, True, False, False, False, True, True]
    assert await a.apply(changes) == expected
    for channel in ("room:a", "room:b", "room:c"):
        assert await b.users(channel) == await model.users(channel), channel
    assert await b.leave("room:a", "a2", ALICE.user_id) is False and await b.leave("room:a", "a1", ALICE.user_id)
    assert await b.apply([PresenceChange(False, "room:c", "c1", CAROL)]) == [True]
    clock.advance(TTL + 1)
    assert await b.sweep() == []
    assert await keys(a.redis, "vonix:presence:*") == [], "an emptied channel left keys or the sweep index behind"
