"""The Redis broker's own subscriber connection and the batch history script, against a real Redis.

The app-level tests (replicas, Redis outage, group commit) go through these too; here each piece
is driven directly so the edge cases are reachable: many messages in one socket read, a killed
subscriber connection, an authenticated connection, commits reaching Redis out of order, a stale
gap, a flushed script cache.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime.broker.redis import RedisBroker
from realtime.history.base import FrameParts, open_envelope
from realtime.history.redis import RedisHistory


async def _until(predicate: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Received:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.states: list[bool] = []

    def on_message(self, channel: str, payload: bytes) -> None:
        self.messages.append((channel, payload))

    def on_state(self, connected: bool) -> None:
        self.states.append(connected)


@pytest.fixture
async def clients(redis_service: Any) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    publisher = aioredis.Redis.from_url(redis_service.url)
    subscriber = aioredis.Redis.from_url(redis_service.url)
    yield publisher, subscriber
    await publisher.aclose()
    await subscriber.aclose()


async def _broker(publisher: aioredis.Redis, subscriber: aioredis.Redis, received: Received) -> RedisBroker:
    broker = RedisBroker(publisher, subscriber, prefix=f"t{uuid.uuid4().hex[:6]}:")
    broker.on_message = received.on_message
    broker.on_state = received.on_state
    await broker.start()
    await _until(lambda: broker.connected)
    return broker


@pytest.fixture
async def running(clients: Any) -> AsyncIterator[tuple[aioredis.Redis, RedisBroker, Received]]:
    """A connected broker subscribed to `room:a`, what it received, and a client to publish with."""
    publisher, subscriber = clients
    received = Received()
    broker = await _broker(publisher, subscriber, received)
    await broker.subscribe("room:a")
    yield publisher, broker, received
    await broker.close()


async def test_many_messages_in_one_read_arrive_in_order_and_only_for_subscribed_channels(running: Any) -> None:
    publisher, broker, received = running
    async with publisher.pipeline(transaction=False) as pipe:  # one burst: many replies per read
        for i in range(500):
            pipe.publish(f"{broker.prefix}room:a", b"%d" % i)
            pipe.publish(f"{broker.prefix}room:other", b"x")
        await pipe.execute()
    await _until(lambda: len(received.messages) >= 500)
    assert received.messages == [("room:a", b"%d" % i) for i in range(500)]

    await broker.unsubscribe("room:a")
    await broker.subscribe("room:b")  # confirmed: the unsubscribe before it is done too
    await publisher.publish(f"{broker.prefix}room:a", b"late")
    await publisher.publish(f"{broker.prefix}room:b", b"b")
    await _until(lambda: received.messages[-1] == ("room:b", b"b"))
    assert ("room:a", b"late") not in received.messages


async def test_a_killed_subscriber_connection_reconnects_and_resubscribes(running: Any) -> None:
    publisher, broker, received = running
    killed = await publisher.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 1
    await _until(lambda: received.states[-2:] == [False, True])
    await publisher.publish(f"{broker.prefix}room:a", b"after")
    await _until(lambda: ("room:a", b"after") in received.messages)


async def test_a_subscriber_line_that_stops_answering_is_replaced(clients: Any) -> None:
    """A half-open connection reads nothing forever; a quiet line is PINGed and, without a PONG in
    time, dropped and reopened (here Redis stops answering for a while: CLIENT PAUSE)."""
    publisher, subscriber = clients
    received = Received()
    broker = RedisBroker(publisher, subscriber, prefix=f"t{uuid.uuid4().hex[:6]}:", ping_every=0.1, ping_within=0.2)
    broker.on_message = received.on_message
    broker.on_state = received.on_state
    await broker.start()
    try:
        await _until(lambda: broker.connected)
        await broker.subscribe("room:a")
        await asyncio.sleep(0.5)
        assert received.states == [True]  # quiet but answering: PINGs keep it
        await publisher.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        await _until(lambda: received.states[-1:] == [False], 3)
        await _until(lambda: received.states[-1:] == [True], 5)
        await publisher.publish(f"{broker.prefix}room:a", b"back")
        await _until(lambda: ("room:a", b"back") in received.messages)
    finally:
        await broker.close()


async def test_the_subscriber_authenticates_with_the_url_credentials(redis_service: Any) -> None:
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = aioredis.Redis.from_url(redis_service.url)
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    url = redis_service.url.replace("redis://", f"redis://{user}:{password}@")
    wrong = redis_service.url.replace("redis://", f"redis://{user}:not-{password}@")
    publisher, subscriber, refused = (aioredis.Redis.from_url(u) for u in (url, url, wrong))
    received = Received()
    try:
        broker = await _broker(publisher, subscriber, received)
        await broker.subscribe("room:a")
        await publisher.publish(f"{broker.prefix}room:a", b"hello")
        await _until(lambda: received.messages == [("room:a", b"hello")])
        clients = await admin.execute_command("CLIENT", "LIST")
        assert f"user={user}" in (clients.decode() if isinstance(clients, bytes) else str(clients))
        await broker.close()

        locked_out = RedisBroker(publisher, refused)
        await locked_out.start()
        await asyncio.sleep(0.5)
        assert not locked_out.connected  # a wrong password never counts as connected
        await locked_out.close()
    finally:
        await admin.execute_command("ACL", "DELUSER", user)
        for client in (admin, publisher, subscriber, refused):
            await client.aclose()


def _parts(text: str) -> FrameParts:
    return FrameParts.message("room:h", {"text": text}, None, 1.0)


async def test_batch_script_orders_commits_that_reach_redis_out_of_order(clients: Any) -> None:
    publisher, subscriber = clients
    received = Received()
    broker = await _broker(publisher, subscriber, received)
    history = RedisHistory(publisher, prefix=broker.prefix, stale_ms=200)
    try:
        await broker.subscribe("room:h")
        await broker.subscribe("room:i")
        await history.publish_stored([("room:h", _parts("one"), 1, "e1")])
        # Offset 3 (another replica's commit) arrives before 2: held back until 2 comes.
        await history.publish_stored([("room:h", _parts("three"), 3, "e1"), ("room:i", _parts("i1"), 1, "e1")])
        await history.publish_stored([("room:h", _parts("two"), 2, "e1"), ("room:h", _parts("two again"), 2, "e1")])
        await _until(lambda: len(received.messages) >= 4)
        await asyncio.sleep(0.05)
        offsets = [(ch, open_envelope(p)[0]) for ch, p in received.messages]
        assert offsets == [("room:h", 1), ("room:i", 1), ("room:h", 2), ("room:h", 3)]
        assert b'"two"' in received.messages[2][1]  # the first copy of offset 2 wins

        # A gap whose message never comes (its publisher died) is skipped once stale.
        await history.publish_stored([("room:h", _parts("five"), 5, "e1")])
        await asyncio.sleep(0.3)
        await publisher.script_flush()  # and a script Redis forgot is loaded again
        await history.publish_stored([("room:h", _parts("six"), 6, "e1")])
        await _until(lambda: len(received.messages) >= 6)
        assert [open_envelope(p)[0] for _, p in received.messages[4:]] == [5, 6]

        window = await history.recover("room:h", 0, 10)
        assert window is not None and [offset for offset, _ in window] == [1, 2, 3, 5, 6]
        assert (await history.position("room:h")).epoch == "e1"
    finally:
        await broker.close()


async def test_offsets_delivered_without_redis_do_not_hold_back_the_next_ones(clients: Any) -> None:
    """A replica that stored 2..4 while its publish failed (delivered locally only) tells the
    history with `skip_to` before its next publish: nothing waits any longer in `pending` for
    offsets that will never pass through Redis (until stale_ms and then yet another message)."""
    publisher, subscriber = clients
    received = Received()
    broker = await _broker(publisher, subscriber, received)
    history = RedisHistory(publisher, prefix=broker.prefix, stale_ms=60_000)
    try:
        await broker.subscribe("room:h")
        await history.publish_stored([("room:h", _parts("one"), 1, "e1")])
        await _until(lambda: len(received.messages) == 1)
        await history.publish_stored([("room:h", _parts("five"), 5, "e1")])  # without skip_to: parked
        await asyncio.sleep(0.2)
        assert len(received.messages) == 1
        await history.skip_to("room:h", 4)
        await history.publish_stored([("room:h", _parts("six"), 6, "e1")])
        await _until(lambda: len(received.messages) == 3)
        assert [open_envelope(p)[0] for _, p in received.messages] == [1, 5, 6]  # 5 released, in order
        assert await publisher.ttl(f"{broker.prefix}h:{{room:h}}:offset") > 0  # the TTL kept
        await history.skip_to("room:h", 3)  # never backwards
        await history.publish_stored([("room:h", _parts("seven"), 7, "e1")])
        await _until(lambda: len(received.messages) == 4)
    finally:
        await broker.close()


async def test_a_parked_message_is_released_once_stale_without_waiting_for_another(clients: Any) -> None:
    """`publish_stored` names the channels left with a parked message and `release_stale` publishes
    it once stale, saying how long until then: the group commit's timer needs no later message."""
    publisher, subscriber = clients
    received = Received()
    broker = await _broker(publisher, subscriber, received)
    history = RedisHistory(publisher, prefix=broker.prefix, stale_ms=300)
    try:
        await broker.subscribe("room:h")
        assert await history.publish_stored([("room:h", _parts("one"), 1, "e1")]) == set()
        assert await history.publish_stored([("room:h", _parts("three"), 3, "e1")]) == {"room:h"}
        due = await history.release_stale("room:h")
        assert due is not None and 0 < due <= 0.3
        await asyncio.sleep(0.05)
        assert len(received.messages) == 1  # not yet stale: still waiting for 2
        await asyncio.sleep(due)
        assert await history.release_stale("room:h") is None  # released, nothing left
        await _until(lambda: len(received.messages) == 2)
        assert [open_envelope(p)[0] for _, p in received.messages] == [1, 3]
        assert await history.release_stale("room:quiet") is None  # a channel with nothing at all
        assert await history.publish_stored([("room:h", _parts("four"), 4, "e1")]) == set()
    finally:
        await broker.close()
