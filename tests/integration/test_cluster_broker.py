"""Issue 19: the broker on a real Redis Cluster (3 masters + 3 replicas) uses sharded pub/sub.

Each channel is subscribed on the master owning its slot only, every master carries a share of the
channels, a message published on one replica reaches the other, and a master's death is followed:
its replica is promoted, the broker subscribes there and reports the gap so the node can fill it.
Under load (a publisher on one replica, a member on the other), a master's death, a slot moving to
another master and an ephemeral channel's shard losing its data each keep the guarantees: stored
messages once and in order, ephemeral gaps recovered or honestly reported `recovered: false`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as redis_sync
from redis.crc import key_slot

from realtime.broker import create_broker
from realtime.broker.cluster import ClusterBroker
from realtime.history.redis import shard_topic
from server.infra.redis import RedisClients
from server.observability.metrics import Metrics
from tests.conftest import flushed_cluster, fresh_postgres_url, make_settings
from tests.integration.test_realtime_replicas import make_users
from tests.support.accounts import make_admin
from tests.support.appserver import AppServer
from tests.support.cluster import RedisClusterServers
from tests.support.services import PostgresServer
from tests.support.wsclient import WsClient

pytestmark = [pytest.mark.slow, pytest.mark.scaled]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers().start()
    try:
        yield servers
    finally:
        servers.cleanup()


class Received:
    """What one broker handed to its node, and the states it reported."""

    def __init__(self, broker: ClusterBroker) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.states: list[bool] = []
        broker.on_message = lambda channel, payload: self.messages.append((channel, payload))
        broker.on_state = self.states.append

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} arrived"
            await asyncio.sleep(0.01)


@pytest.fixture
async def brokers(cluster: RedisClusterServers) -> AsyncIterator[list[tuple[ClusterBroker, Received]]]:
    made = []
    clients = []
    for _ in range(2):
        redis = RedisClients(cluster.url, Metrics(), timeout=1.0, cluster=True)
        await redis.start()
        broker = create_broker(redis, prefix="vonix:", metrics=Metrics())
        assert isinstance(broker, ClusterBroker)
        broker.ping_every = 0.5
        broker.ping_within = 0.5
        received = Received(broker)
        await broker.start()
        made.append((broker, received))
        clients.append(redis)
    yield made
    for broker, _ in made:
        await asyncio.wait_for(broker.close(), 10)
    for redis in clients:
        await redis.close()


def shard_subscribers(cluster: RedisClusterServers, wire: str) -> dict[int, int]:
    """Per master port: how many connections follow shard channel `wire` there."""
    counts = {}
    for node in cluster.masters_now():
        client = redis_sync.Redis(port=node.port)
        try:
            reply = client.execute_command("PUBSUB", "SHARDNUMSUB", wire)
        finally:
            client.close()
        counts[node.port] = int(reply[1])
    return counts


async def test_channels_live_on_their_own_shard_and_reach_the_other_replica(
        cluster: RedisClusterServers, brokers: list[tuple[ClusterBroker, Received]]) -> None:
    (a, _), (b, on_b) = brokers
    channels = [f"room:shard{i}" for i in range(24)]
    for channel in channels:
        await b.subscribe(channel)
    owners = set()
    for channel in channels:
        wire = shard_topic("vonix:", channel)
        counts = shard_subscribers(cluster, wire)
        owner = cluster.master_for_slot(key_slot(wire.encode())).port
        assert counts[owner] == 1, (channel, counts)  # subscribed on the owner ...
        assert sum(counts.values()) == 1, (channel, counts)  # ... and nowhere else
        owners.add(owner)
    assert owners == {node.port for node in cluster.masters_now()}  # every shard carries a share

    for i, channel in enumerate(channels):
        await a.publish(channel, f"hello {i}".encode())
    await on_b.wait_for(len(channels))
    assert sorted(on_b.messages) == sorted((c, f"hello {i}".encode()) for i, c in enumerate(channels))

    await b.unsubscribe(channels[0])
    await a.publish(channels[0], b"after")
    await a.publish(channels[1], b"still")
    await on_b.wait_for(len(channels) + 1)
    await asyncio.sleep(0.2)
    assert on_b.messages[len(channels):] == [(channels[1], b"still")]  # nothing for the dropped one
    assert on_b.states == []  # no gap was reported: nothing broke


async def test_a_dead_master_is_followed_to_its_promoted_replica(
        cluster: RedisClusterServers, brokers: list[tuple[ClusterBroker, Received]]) -> None:
    (a, _), (b, on_b) = brokers
    channel = "room:failover"
    wire = shard_topic("vonix:", channel)
    await b.subscribe(channel)
    await a.publish(channel, b"before")
    await on_b.wait_for(1)

    doomed = cluster.master_for_slot(key_slot(wire.encode()))
    doomed.kill()
    started = time.monotonic()
    delivered = 1
    while time.monotonic() - started < 20:  # publish until the promoted replica takes it
        try:
            await a.publish(channel, f"after {delivered}".encode())
        except Exception:  # the slot has no master for a moment: the publisher's error to handle
            await asyncio.sleep(0.1)
            continue
        if len(on_b.messages) > 1:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"nothing arrived after the master died: {on_b.messages}, states {on_b.states}")
    took = time.monotonic() - started
    assert took < 15, took  # cluster-node-timeout 1 s: promoted within seconds, followed at once
    assert on_b.states[:1] == [False] and on_b.states[-1] is True, on_b.states  # the gap was reported
    assert b.connected
    new_owner = cluster.master_for_slot(key_slot(wire.encode()))
    assert new_owner.port != doomed.port
    assert shard_subscribers(cluster, wire)[new_owner.port] == 1
    doomed.start()  # back as a replica of the promoted one: the module's other tests keep 3 masters
    cluster.wait_ok()


async def test_a_moved_slot_is_followed_to_its_new_master(
        cluster: RedisClusterServers, brokers: list[tuple[ClusterBroker, Received]]) -> None:
    (a, _), (b, on_b) = brokers
    channel = "room:resharded"
    wire = shard_topic("vonix:", channel)
    slot = key_slot(wire.encode())
    await b.subscribe(channel)
    await a.publish(channel, b"before")
    await on_b.wait_for(1)
    source = cluster.master_for_slot(slot)
    target = next(node for node in cluster.masters_now() if node.port != source.port)

    cluster.migrate_slot(slot, target)  # Redis ends the shard subscription on the old owner
    deadline = time.monotonic() + 10
    while not (on_b.states and on_b.states[-1] is True and shard_subscribers(cluster, wire)[target.port] == 1):
        assert time.monotonic() < deadline, (on_b.states, shard_subscribers(cluster, wire))
        await asyncio.sleep(0.05)
    assert on_b.states == [False, True]  # the gap reported, then closed once subscribed on the new owner
    assert shard_subscribers(cluster, wire)[source.port] == 0
    await a.publish(channel, b"after")  # the publisher follows MOVED to the new owner
    await on_b.wait_for(2)
    assert on_b.messages == [(channel, b"before"), (channel, b"after")]
    cluster.migrate_slot(slot, source)  # as it was, for the other tests of the module


async def test_two_replicas_on_the_cluster_deliver_a_room_message(
        cluster: RedisClusterServers, postgres_service: PostgresServer) -> None:
    """The whole path: a stored room message, published on A by the history script with SPUBLISH
    on the channel's shard, reaches a member subscribed on B."""
    settings = make_settings(DATABASE_URL=fresh_postgres_url(postgres_service), REDIS_URL=cluster.url,
                             REDIS_CLUSTER="true", REDIS_HEALTH_INTERVAL=0.5)
    async with AppServer(settings) as a, AppServer(settings) as b:
        assert isinstance(a.resources.broker, ClusterBroker)
        tokens = await make_users(a.base_url, "Shard_Sam", "Shard_Kim")
        sam = await WsClient.connect(a.base_url, tokens["Shard_Sam"])
        kim = await WsClient.connect(b.base_url, tokens["Shard_Kim"])
        try:
            await kim.request("subscribe", channel="room:general")
            await sam.request("subscribe", channel="room:general")
            sent = await sam.request("publish", channel="room:general", data={"text": "across shards"})
            message = await kim.push("message")
            assert message["data"]["text"] == "across shards"
            assert message["offset"] == sent["offset"]
        finally:
            await sam.close()
            await kim.close()


def test_cluster_mode_needs_a_clustered_url() -> None:
    with pytest.raises(Exception, match="REDIS_CLUSTER=true needs REDIS_URL"):
        make_settings(REDIS_CLUSTER="true", REDIS_URL="")
    with pytest.raises(Exception, match="only database 0"):
        make_settings(REDIS_CLUSTER="true", REDIS_URL="redis://127.0.0.1:7000/2")
    with pytest.raises(Exception, match="redis:// or rediss://"):
        make_settings(REDIS_CLUSTER="true", REDIS_URL="unix:///tmp/redis.sock")


async def publish_once_acknowledged(publisher: WsClient, channel: str, i: int, within: float = 20.0) -> int:
    """Publish message `i`, retrying a refused or unanswered publish with the same nonce (stored
    once either way), as the PWA does; its acknowledged offset."""
    deadline = time.monotonic() + within
    while True:
        try:
            reply = await publisher.request("publish", channel=channel, nonce=f"busy-{i}",
                                            data={"text": f"busy {i}"}, timeout=5)
        except TimeoutError:
            reply = {"ok": False}
        if reply.get("ok"):
            return int(reply["offset"])
        assert time.monotonic() < deadline, f"publish {i} refused for {within} s: {reply}"
        await asyncio.sleep(0.2)


async def assert_each_once_in_order(reader: WsClient, channel: str, acknowledged: list[int]) -> None:
    """Every acknowledged offset reaches the reader once, in order, and nothing after the last."""
    assert len(set(acknowledged)) == len(acknowledged) and acknowledged == sorted(acknowledged)
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while len(seen) < len(acknowledged):
        assert time.monotonic() < deadline, f"{len(seen)} of {len(acknowledged)} reached B; missing " \
            f"{sorted(set(acknowledged) - set(seen))[:10]}"
        try:
            message = await reader.push("message", timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            continue  # the assertion above says what is missing
        if message["channel"] == channel:
            seen.append(message["offset"])
    await asyncio.sleep(0.5)
    while not reader.pushes.empty():  # nothing more may come: no duplicate after the last
        extra = reader.pushes.get_nowait()
        assert extra.get("op") != "message" or extra.get("channel") != channel, extra
    assert seen == acknowledged  # each once, in order


def busy_settings(cluster: RedisClusterServers, postgres_service: PostgresServer) -> Any:
    """A fresh database and an empty cluster. Not only tidiness: the history script ignores an offset
    at or below the one Redis last saw, so a fresh database's room:general (offsets from 1 again)
    behind another test's Redis history (offsets up to 120) would be stored but never published."""
    return make_settings(DATABASE_URL=fresh_postgres_url(postgres_service), REDIS_URL=flushed_cluster(cluster),
                         REDIS_CLUSTER="true", REDIS_HEALTH_INTERVAL=0.5, REDIS_TIMEOUT=0.5,
                         WS_PUBLISH_BURST=500, WS_PUBLISH_RATE=500)


async def test_a_busy_room_loses_nothing_and_doubles_nothing_when_its_master_dies(
        cluster: RedisClusterServers, postgres_service: PostgresServer) -> None:
    """The failover of the issue: a publisher on A keeps writing to a room (retrying a refused
    publish with the same nonce), a member on B reads; the master owning the room's slot is
    killed midway. Every acknowledged message reaches B exactly once, in offset order."""
    settings = busy_settings(cluster, postgres_service)  # one database for both replicas
    async with AppServer(settings) as a, AppServer(settings) as b:
        tokens = await make_users(a.base_url, "Busy_Pub", "Busy_Sub")
        publisher = await WsClient.connect(a.base_url, tokens["Busy_Pub"])
        reader = await WsClient.connect(b.base_url, tokens["Busy_Sub"])
        wire = shard_topic("vonix:", "room:general")
        doomed = cluster.master_for_slot(key_slot(wire.encode()))
        try:
            await reader.request("subscribe", channel="room:general")
            acknowledged: list[int] = []
            for i in range(120):
                if i == 40:
                    doomed.kill()
                acknowledged.append(await publish_once_acknowledged(publisher, "room:general", i))
                await asyncio.sleep(0.01)
            await assert_each_once_in_order(reader, "room:general", acknowledged)
        finally:
            await publisher.close()
            await reader.close()
            if doomed not in cluster.live():
                doomed.start()
            cluster.wait_ok()


async def test_a_busy_room_loses_nothing_and_doubles_nothing_when_its_slot_moves(
        cluster: RedisClusterServers, postgres_service: PostgresServer) -> None:
    """Resharding under load: the room's slot (its history keys and its shard channel) moves to
    another master while a publisher on A keeps writing and a member on B reads. Redis ends the
    shard subscription on the old owner and answers ASK/TRYAGAIN while the keys move; every
    acknowledged message still reaches B exactly once, in offset order."""
    slot = key_slot(shard_topic("vonix:", "room:general").encode())
    source = cluster.master_for_slot(slot)
    target = next(node for node in cluster.masters_now() if node.port != source.port)
    settings = busy_settings(cluster, postgres_service)  # one database for both replicas
    async with AppServer(settings) as a, AppServer(settings) as b:
        tokens = await make_users(a.base_url, "Moved_Pub", "Moved_Sub")
        publisher = await WsClient.connect(a.base_url, tokens["Moved_Pub"])
        reader = await WsClient.connect(b.base_url, tokens["Moved_Sub"])
        try:
            await reader.request("subscribe", channel="room:general")
            acknowledged = [await publish_once_acknowledged(publisher, "room:general", i) for i in range(40)]
            # The slot moves in a thread while the publishes go on, and they go on after it moved.
            migration = asyncio.ensure_future(asyncio.to_thread(cluster.migrate_slot, slot, target))
            after_move = 0
            deadline = time.monotonic() + 30
            while after_move < 40:
                assert time.monotonic() < deadline, "the slot did not move within 30 s"
                after_move += migration.done()
                acknowledged.append(await publish_once_acknowledged(publisher, "room:general", len(acknowledged)))
                await asyncio.sleep(0.01)
            await migration  # its error, if it failed
            assert cluster.master_for_slot(slot).port == target.port
            await assert_each_once_in_order(reader, "room:general", acknowledged)
        finally:
            await publisher.close()
            await reader.close()
            if cluster.master_for_slot(slot).port != source.port:
                cluster.migrate_slot(slot, source)  # as it was, for the other tests of the module


async def test_a_moved_channel_is_subscribed_again_even_while_two_masters_disagree_who_owns_it(
        cluster: RedisClusterServers, brokers: list[tuple[ClusterBroker, Received]]) -> None:
    """The old owner gives the slot away (ending the shard subscription) before the new owner has
    heard it owns it: for a moment each answers an SSUBSCRIBE with MOVED to the other. The broker
    must keep trying until a master confirms, and only then report that its channels are whole
    again; reporting it earlier lets the node fill the gap while the channel is subscribed nowhere,
    and everything published afterwards is lost (seen in CI under load)."""
    (a, _), (b, on_b) = brokers
    channel = "room:disputed"
    wire = shard_topic("vonix:", channel)
    slot = key_slot(wire.encode())
    source = cluster.master_for_slot(slot)
    target = next(node for node in cluster.masters_now() if node.port != source.port)
    # B already follows a channel on the new owner: its connection there is up (a new connection
    # would wait for its confirmations and reconnect when they do not come, which hides the fault).
    anchor = next(name for name in (f"room:anchor{i}" for i in range(1000))
                  if cluster.master_for_slot(key_slot(shard_topic("vonix:", name).encode())).port == target.port)
    await b.subscribe(anchor)
    await b.subscribe(channel)
    on_b.states.clear()
    try:
        await asyncio.to_thread(cluster.migrate_slot, slot, target, lambda: time.sleep(1.5))
        deadline = time.monotonic() + 10
        while True:
            counts = await asyncio.to_thread(shard_subscribers, cluster, wire)
            if counts[target.port] == 1 and on_b.states[-1:] == [True]:
                break
            assert time.monotonic() < deadline, f"not subscribed on the new owner: {counts}, states {on_b.states}"
            await asyncio.sleep(0.1)
        assert on_b.states[0] is False  # the gap was reported
        await a.publish(channel, b"after the move")
        await on_b.wait_for(1)
        assert on_b.messages == [(channel, b"after the move")]
    finally:
        await asyncio.to_thread(cluster.migrate_slot, slot, source)


def wait_replicas_in_sync(cluster: RedisClusterServers, timeout: float = 10.0) -> None:
    """Until every live replica's replication offset equals its master's: what the master stored is
    on the replica too (replication is asynchronous; a failover test must know what it kills)."""
    deadline = time.monotonic() + timeout
    while True:
        masters = {node.port: node.command("info", "replication") for node in cluster.masters_now()}
        behind = []
        for node in cluster.live():
            info = node.command("info", "replication")
            if "role:slave" not in info:
                continue
            port = int(_field(info, "master_port"))
            if port in masters and _field(info, "slave_repl_offset") != _field(masters[port], "master_repl_offset"):
                behind.append(node.port)
        if not behind:
            return
        assert time.monotonic() < deadline, f"replicas {behind} not in sync after {timeout} s"
        time.sleep(0.05)


def _field(info: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(name + ":"))


async def publish_until_accepted(client: WsClient, channel: str, text: str, within: float = 15.0) -> dict[str, Any]:
    """Publish, retrying a refused or unanswered publish (the slot has no master for a moment)."""
    deadline = time.monotonic() + within
    while True:
        try:
            reply = await client.request("publish", channel=channel, data={"text": text}, timeout=3)
        except TimeoutError:
            reply = {"ok": False}
        if reply.get("ok"):
            return reply
        assert time.monotonic() < deadline, f"publish to {channel} refused for {within} s: {reply}"
        await asyncio.sleep(0.2)


async def test_ephemeral_channels_recover_across_a_failover_and_say_so_when_their_shard_lost_its_data(
        cluster: RedisClusterServers, postgres_service: PostgresServer) -> None:
    """An ephemeral channel's history lives only in Redis, on the master owning its slot.

    1. That master dies, its in-sync replica is promoted: a member who was away resubscribes with
       `since` and gets every message published meanwhile (before and after the failover), once,
       in order, `recovered: true`.
    2. The whole shard loses its data (master and replica die and come back empty): the channel
       gets a new epoch, and the member resubscribing with `since` is told `recovered: false`
       instead of being handed offsets of another history as if nothing had happened.
    """
    settings = make_settings(DATABASE_URL=fresh_postgres_url(postgres_service), REDIS_URL=cluster.url,
                             REDIS_CLUSTER="true", REDIS_HEALTH_INTERVAL=0.5, REDIS_TIMEOUT=0.5)
    channel = "bot:weather"
    slot = key_slot(shard_topic("vonix:", channel).encode())
    async with AppServer(settings) as a, AppServer(settings) as b:
        tokens = await make_users(a.base_url, "Eph_Admin", "Eph_Reader")
        await make_admin(a, "Eph_Admin")  # an admin may publish on any bot: channel
        publisher = await WsClient.connect(a.base_url, tokens["Eph_Admin"])
        reader = await WsClient.connect(b.base_url, tokens["Eph_Reader"])
        try:
            await reader.request("subscribe", channel=channel)
            first = await publish_until_accepted(publisher, channel, "m0")
            seen = await reader.push("message")
            assert (seen["offset"], seen["epoch"]) == (first["offset"], first["epoch"])
            await reader.close()  # the member is away from here on

            away = [await publish_until_accepted(publisher, channel, f"m{i}") for i in range(1, 4)]
            wait_replicas_in_sync(cluster)
            doomed = cluster.master_for_slot(slot)
            doomed.kill()
            started = time.monotonic()
            away += [await publish_until_accepted(publisher, channel, f"m{i}") for i in range(4, 7)]
            assert time.monotonic() - started < 15  # cluster-node-timeout 1 s: a few seconds, no hang
            assert cluster.master_for_slot(slot).port != doomed.port
            assert [r["epoch"] for r in away] == [first["epoch"]] * 6  # the promoted replica kept the history
            assert [r["offset"] for r in away] == list(range(first["offset"] + 1, first["offset"] + 7))

            reader = await WsClient.connect(b.base_url, tokens["Eph_Reader"])
            reply = await reader.request("subscribe", channel=channel,
                                         since={"offset": seen["offset"], "epoch": seen["epoch"]})
            assert reply["recovered"] is True, reply
            assert [(m["offset"], m["data"]["text"]) for m in reply["missed"]] == \
                [(r["offset"], f"m{i}") for i, r in enumerate(away, start=1)]
            last = reply["missed"][-1]
            await reader.close()
            doomed.start()  # back as the promoted master's replica
            cluster.wait_ok()

            shard = [node for node in cluster.live() if _owns_or_follows(cluster, node, slot)]
            assert len(shard) == 2, [node.port for node in shard]
            for node in shard:  # the shard loses its data: both die, both come back empty
                node.kill()
            for node in shard:
                node.start()
            cluster.wait_ok()
            after = await publish_until_accepted(publisher, channel, "new history")
            assert after["epoch"] != first["epoch"] and after["offset"] == 1

            reader = await WsClient.connect(b.base_url, tokens["Eph_Reader"])
            reply = await reader.request("subscribe", channel=channel,
                                         since={"offset": last["offset"], "epoch": last["epoch"]})
            assert reply["recovered"] is False and reply["missed"] == [], reply
            assert (reply["offset"], reply["epoch"]) == (1, after["epoch"])  # where to continue from
        finally:
            await publisher.close()
            await reader.close()
            for node in cluster.nodes:
                if node not in cluster.live():
                    node.start()
            cluster.wait_ok()


def _owns_or_follows(cluster: RedisClusterServers, node: Any, slot: int) -> bool:
    """True for the master owning `slot` and for its replicas."""
    owner = cluster.master_for_slot(slot)
    if node.port == owner.port:
        return True
    info = node.command("info", "replication")
    return "role:slave" in info and int(_field(info, "master_port")) == owner.port
