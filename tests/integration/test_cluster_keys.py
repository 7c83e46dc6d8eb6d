"""Every Redis use but the broker works on Redis Cluster (issue 19): each multi-key operation keeps
its keys in one hash slot, and every key a Lua script touches is one it declared in KEYS.

One redis-server with `--cluster-enabled yes` owning all 16384 slots proves the slot rules cheaply:
the cluster client refuses a command, pipeline transaction or script whose keys span slots, and the
server refuses CROSSSLOT multi-key commands. What it does not refuse (Redis 7.0) is a script
touching keys it did not declare: a multi-node cluster fails such a script only when a key happens
to live on another node. So every cluster-mode test runs under `ScriptAudit`: MONITOR shows each
command a script runs, `COMMAND GETKEYS` names that command's keys, and a key outside the script's
KEYS, a shard channel outside their slot, or a classic PUBLISH (broadcast to every node) fails
the test. `test_every_script_is_audited` runs every script of every component once and checks the
audit saw them all; `test_the_audit_catches_a_script_deriving_its_keys` shows it catches the
single-Redis batch script.

Each scenario runs on a single Redis ("scaled") and on the cluster ("cluster") and asserts the same
values, so cluster mode gives the same results.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, MaxConnectionsError, RedisClusterException, ResponseError

from realtime.history.base import FrameParts, open_envelope
from realtime.history.redis import _ORDERED_BATCH, RedisHistory
from realtime.nonces import RedisNonces, create_nonces
from realtime.presence.base import PresenceChange, PresenceUser
from realtime.presence.redis import RedisPresence
from server.bridges.health import BridgeHealth
from server.cache import Cache
from server.cache.redis import RedisShared
from server.db.database import Database
from server.db.tables import users
from server.db.urls import parse_database_url
from server.infra.breaker import Breakers
from server.infra.locks import RedisLock
from server.infra.redis import QueueingRedisCluster, RedisClients
from server.observability.alerts import Alerter
from server.observability.metrics import Metrics
from server.ops.stats import ClusterStats
from server.ratelimit.redis import CLUSTER_PARTITIONS, RedisCounts
from server.ratelimit.rules import Rule
from server.services.xp import Xp
from tests.conftest import flushed_cluster, fresh_sqlite_url
from tests.support.cluster import RedisClusterServers
from tests.support.services import free_port, wait_port

pytestmark = pytest.mark.scaled

MODES = ["scaled", "cluster"]


# --- a one-node cluster ------------------------------------------------------------------------
@dataclass
class ClusterNode:
    port: int
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        done = subprocess.run([shutil.which("redis-cli") or "/usr/bin/redis-cli", "-p", str(self.port), *args],
                              capture_output=True, text=True, timeout=10, check=True)
        return done.stdout


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[ClusterNode]:
    node = ClusterNode(free_port(), Path(tempfile.mkdtemp(prefix="vonix-cluster1-")))
    subprocess.run([
        shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(node.port),
        "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", str(node.dir),
        "--pidfile", str(node.dir / "redis.pid"), "--logfile", str(node.dir / "redis.log"),
        "--cluster-enabled", "yes", "--cluster-config-file", str(node.dir / "nodes.conf"),
    ], check=True)
    try:
        wait_port(node.port)
        node.cli("cluster", "addslotsrange", "0", "16383")
        deadline = time.monotonic() + 15
        while "cluster_state:ok" not in node.cli("cluster", "info"):
            if time.monotonic() > deadline:
                raise TimeoutError("the one-node cluster never reached cluster_state:ok")
            time.sleep(0.05)
        yield node
    finally:
        with contextlib.suppress(Exception):
            node.cli("shutdown", "nosave")
        shutil.rmtree(node.dir, ignore_errors=True)


# --- the script audit --------------------------------------------------------------------------
_LINE = re.compile(rb"^\+?\d+\.\d+ \[\d+ ([^\]]*)\] (.*)$")
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("a"): b"\a", ord("b"): b"\b",
            ord('"'): b'"', ord("\\"): b"\\"}
_EVALS = {b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO"}
_KEYLESS = {b"TIME", b"PUBLISH", b"SPUBLISH"}


def _monitor_args(text: bytes) -> list[bytes]:
    """The quoted arguments of a MONITOR line (sdscatrepr: \\n, \\", \\xHH ...)."""
    args: list[bytes] = []
    i = 0
    while i < len(text):
        if text[i] != ord('"'):
            i += 1
            continue
        out = bytearray()
        i += 1
        while text[i] != ord('"'):
            if text[i] == ord("\\"):
                if text[i + 1] == ord("x"):
                    out.append(int(text[i + 2:i + 4], 16))
                    i += 4
                else:
                    out += _ESCAPES[text[i + 1]]
                    i += 2
            else:
                out.append(text[i])
                i += 1
        args.append(bytes(out))
        i += 1
    return args


@dataclass
class ScriptAudit:
    """Watches a node with MONITOR; `verify` lists every script command that broke the rules."""

    url: str
    lines: list[bytes] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # SHA1 of every script run
    _task: asyncio.Task[None] | None = None
    _writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        host, port = self.url.removeprefix("redis://").split("/")[0].split(":")
        reader, self._writer = await asyncio.open_connection(host, int(port))
        self._writer.write(b"MONITOR\r\n")
        assert await reader.readline() == b"+OK\r\n"
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self.lines.append(line.rstrip(b"\r\n"))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task

    async def verify(self) -> list[str]:
        probe = aioredis.Redis.from_url(self.url)
        marker = f"audit-{uuid.uuid4().hex}".encode()
        try:
            await probe.echo(marker)  # every command before it has reached MONITOR once it shows
            deadline = time.monotonic() + 5
            while not any(marker in line for line in self.lines[-50:]):
                assert time.monotonic() < deadline, "MONITOR never showed the marker"
                await asyncio.sleep(0.01)
            return await self._check(probe)
        finally:
            await probe.aclose()

    async def _check(self, probe: aioredis.Redis) -> list[str]:
        problems: list[str] = []
        script: str | None = None
        declared: set[bytes] = set()
        for line in self.lines:
            match = _LINE.match(line)
            if match is None:
                continue
            source, args = match.group(1), _monitor_args(match.group(2))
            name = args[0].upper()
            if source != b"lua":
                script = None
                if name in _EVALS:
                    sha = args[1].decode() if name.startswith(b"EVALSHA") else hashlib.sha1(args[1]).hexdigest()
                    script, declared = sha[:10], set(args[3:3 + int(args[2])])
                    self.seen.add(sha)
                continue
            if script is None:
                problems.append(f"a script command outside any script call: {args!r}")
                continue
            if name == b"PUBLISH":
                problems.append(f"script {script}: PUBLISH {args[1]!r} is broadcast to every node (use SPUBLISH)")
            elif name == b"SPUBLISH":
                if key_slot(args[1]) not in {key_slot(k) for k in declared}:
                    problems.append(f"script {script}: SPUBLISH {args[1]!r} outside the slot of its keys")
            elif name not in _KEYLESS:
                keys = await self._keys(probe, args)
                undeclared = [k for k in keys if k not in declared]
                if undeclared:
                    problems.append(f"script {script}: {name.decode()} touches undeclared {undeclared!r}")
        return problems

    @staticmethod
    async def _keys(probe: aioredis.Redis, args: list[bytes]) -> list[bytes]:
        try:
            keys = await probe.command_getkeys(*args)
            return [k.encode() if isinstance(k, str) else k for k in keys]
        except ResponseError as exc:
            if "no key arguments" in str(exc):
                return []
            raise


@pytest.fixture(params=MODES)
async def clients(request: pytest.FixtureRequest) -> AsyncIterator[RedisClients]:
    """RedisClients on the session's single Redis or, under the script audit, on the cluster."""
    cluster = request.param == "cluster"
    url = request.getfixturevalue("cluster_node").url if cluster else request.getfixturevalue("redis_service").url
    redis = RedisClients(url, Metrics(), timeout=1.0, health_interval=0.2, cluster=cluster)
    await redis.commands.flushall()
    await redis.start()
    audit = ScriptAudit(url) if cluster else None
    if audit is not None:
        await audit.start()
    try:
        yield redis
        if audit is not None:
            problems = await audit.verify()
            assert not problems, "scripts broke the cluster key rules:\n" + "\n".join(problems)
    finally:
        if audit is not None:
            await audit.stop()
        await redis.close()


async def _until(predicate: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _spread(*names: str, key: Any = lambda n: n) -> None:
    """The scenario means something on the cluster only when its names land in different slots."""
    assert len({key_slot(key(n).encode()) for n in names}) == len(names), names


# --- the clients --------------------------------------------------------------------------------
async def test_cluster_clients_ping_every_primary_and_report_an_unreachable_cluster(
        cluster_node: ClusterNode) -> None:
    up = RedisClients(cluster_node.url, Metrics(), cluster=True)
    down = RedisClients(f"redis://127.0.0.1:{free_port()}", Metrics(), timeout=0.3, cluster=True)
    try:
        assert await up.check() is True and up.healthy and up.last_ping_seconds is not None
        assert isinstance(up.commands, RedisCluster) and type(up.subscriber).__name__ == "Redis"
        assert await down.check() is False  # no exception escapes the health loop
        assert not down.healthy and down.last_error is not None
        assert down.last_error.startswith("RedisClusterUnreachableError")
    finally:
        await up.close()
        await down.close()


async def test_a_burst_past_the_pool_waits_for_a_connection_instead_of_failing(
        redis_cluster_service: RedisClusterServers) -> None:
    """redis-py's cluster pools raise MaxConnectionsError at once past their size; a burst of
    members subscribing at the same moment then failed "unavailable". Here 4 connections per
    client serve 200 concurrent calls and 20 pipelines spanning all three masters: every one
    succeeds, no node ever holds more than 4 connections, and a caller that cannot get one within
    the queue timeout gets MaxConnectionsError (an outage to the components), not a hang."""
    clients = RedisClients(flushed_cluster(redis_cluster_service), Metrics(), pool_size=4, cluster=True)
    commands = clients.commands
    assert isinstance(commands, QueueingRedisCluster)
    try:
        keys = [f"burst:{i}" for i in range(200)]
        owners = {redis_cluster_service.master_for_slot(key_slot(k.encode())).port for k in keys}
        assert len(owners) == 3  # the calls and each pipeline reach all three masters

        async def pipeline(n: int) -> list[Any]:
            async with commands.pipeline(transaction=False) as pipe:
                for key in keys[n::20]:
                    pipe.incr(key)
                return list(await pipe.execute())

        singles = await asyncio.gather(*(commands.set(key, 1) for key in keys))
        batches = await asyncio.gather(*(pipeline(n) for n in range(20)))
        assert all(singles) and sorted(v for batch in batches for v in batch) == [2] * 200
        assert max(len(node._connections) for node in commands.get_nodes()) <= 4

        for _ in range(4):
            await commands.in_flight.acquire()  # every permit held by calls that do not end
        commands.queue_timeout = 0.3
        started = time.monotonic()
        with pytest.raises(MaxConnectionsError):
            await commands.get("burst:0")
        assert 0.25 < time.monotonic() - started < 2
    finally:
        await clients.close()


# --- history ------------------------------------------------------------------------------------
class Listener:
    """A subscriber of the node: SSUBSCRIBE on the shard channels on a cluster, SUBSCRIBE else."""

    def __init__(self, url: str, history: RedisHistory) -> None:
        self.client = aioredis.Redis.from_url(url)
        self.pubsub = self.client.pubsub()
        self.history = history
        self.messages: list[tuple[str, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, *channels: str) -> None:
        topics = {self.history.topic(channel): channel for channel in channels}
        if self.history.cluster:
            for topic in topics:  # one SSUBSCRIBE names channels of one slot only
                await self.pubsub.ssubscribe(topic)
        else:
            await self.pubsub.subscribe(*topics)
        confirmed = 0

        async def read() -> None:
            nonlocal confirmed
            while True:
                if self.history.cluster:
                    message = await self.pubsub.get_sharded_message(timeout=0.2)
                else:
                    message = await self.pubsub.get_message(timeout=0.2)
                if message and message["type"] in ("message", "smessage"):
                    self.messages.append((topics[message["channel"].decode()], message["data"]))
                elif message and message["type"] in ("subscribe", "ssubscribe"):
                    confirmed += 1

        self._task = asyncio.create_task(read())
        await _until(lambda: confirmed == len(topics))  # nothing published before this is missed

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pubsub.aclose()
        await self.client.aclose()


def _parts(channel: str, text: str) -> FrameParts:
    return FrameParts.message(channel, {"text": text}, None, 1.0)


async def test_history_assigns_publishes_recovers_and_orders_batches(clients: RedisClients) -> None:
    history = RedisHistory(clients.publisher, stale_ms=200)
    assert history.cluster == clients.cluster
    _spread("room:h", "room:i", "room:j", key=lambda c: history._keys(c)[0])
    listener = Listener(clients.url, history)
    await listener.start("room:h", "room:i", "room:j")
    try:
        published = [await history.publish("room:j", _parts("room:j", f"m{i}")) for i in range(3)]
        assert [p.offset for p in published] == [1, 2, 3] and len({p.epoch for p in published}) == 1
        position = await history.position("room:j")
        assert (position.offset, position.epoch) == (3, published[0].epoch)
        await history.publish_control("room:j", b'{"op":"control"}')

        await history.publish_stored([("room:h", _parts("room:h", "one"), 1, "e1")])
        # Offset 3 (another replica's commit) arrives before 2: held back until 2 comes.
        await history.publish_stored([("room:h", _parts("room:h", "three"), 3, "e1"),
                                      ("room:i", _parts("room:i", "i1"), 1, "e1")])
        await history.publish_stored([("room:h", _parts("room:h", "two"), 2, "e1"),
                                      ("room:h", _parts("room:h", "two again"), 2, "e1")])
        await history.publish_stored([("room:h", _parts("room:h", "five"), 5, "e1")])
        await asyncio.sleep(0.3)  # the gap at 4 goes stale
        await clients.publisher.script_flush()  # and the scripts Redis forgot are loaded again
        await history.publish_stored([("room:h", _parts("room:h", "six"), 6, "e1"),
                                      ("room:i", _parts("room:i", "i2"), 2, "e1")])
        await _until(lambda: len(listener.messages) >= 11)
        await asyncio.sleep(0.05)
        got = [(channel, open_envelope(payload)[0]) for channel, payload in listener.messages]
        assert got == [("room:j", 1), ("room:j", 2), ("room:j", 3), ("room:j", None), ("room:h", 1),
                       ("room:i", 1), ("room:h", 2), ("room:h", 3), ("room:h", 5), ("room:h", 6), ("room:i", 2)]
        assert b'"two"' in listener.messages[6][1]  # the first copy of offset 2 wins

        recovered = await history.recover_many([("room:h", 0, 10), ("room:i", 0, 10), ("room:j", 1, 10),
                                                ("room:j", 3, 10), ("room:h", 3, 10)])
        assert [[o for o, _ in r] if r is not None else None for r in recovered] == [
            [1, 2, 3, 5, 6], [1, 2], [2, 3], [], None]  # 3 -> 5 has a hole: not recoverable
        assert (await history.position("room:h")).epoch == "e1"
        assert (await history.publish("room:i", _parts("room:i", "after"))).offset == 3
    finally:
        await listener.close()


def test_the_prefix_cannot_bring_a_hash_tag() -> None:
    client = aioredis.Redis()
    for build in (lambda: RedisHistory(client, prefix="vonix{x}:"), lambda: RedisPresence(client, prefix="{p}")):
        with pytest.raises(ValueError, match="hash tags"):
            build()


# --- presence and connection caps ---------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _user(user_id: int) -> PresenceUser:
    return PresenceUser(user_id, f"user{user_id}")


async def test_presence_joins_leaves_heartbeats_expires_and_caps_connections(clients: RedisClients) -> None:
    clock = FakeClock()
    a = RedisPresence(clients.commands, ttl=30, clock=clock)
    b = RedisPresence(clients.commands, ttl=30, clock=clock)
    _spread("room:p", "room:q", key=lambda c: a._keys(c)[0])
    assert await a.join("room:p", "c1", _user(1)) is True
    assert await b.join("room:p", "c2", _user(1)) is False  # a second tab of the same user
    assert await b.apply([PresenceChange(True, "room:p", "c3", _user(2)),
                          PresenceChange(True, "room:q", "c4", _user(2)),
                          PresenceChange(False, "room:p", "c2", _user(1))]) == [True, True, False]
    assert [u.user_id for u in await a.users("room:p")] == [1, 2]

    await clients.commands.script_flush()  # pipelines reload the scripts Redis forgot
    clock.now += 20
    assert await a.heartbeat([("room:p", "c1"), ("room:q", "gone")]) == [("room:q", "gone")]
    clock.now += 20  # c3 and c4 expired, c1 was renewed
    left = await b.sweep()
    assert sorted((channel, user.user_id) for channel, user in left) == [("room:p", 2), ("room:q", 2)]
    assert [u.user_id for u in await b.users("room:p")] == [1] and await b.users("room:q") == []
    assert await a.leave("room:p", "c1", 1) is True
    assert await a.sweep() == []

    assert await a.register_connections([(7, "x1"), (7, "x2"), (8, "y1")], limit=2) == [True, True, True]
    assert await b.register_connection(7, "x3", limit=2) is False  # cluster-wide cap
    assert await a.connected_users([7, 8, 9]) == {7, 8}
    await a.unregister_connections([(7, "x1")])
    assert await b.register_connection(7, "x3", limit=2) is True
    await a.heartbeat_connections([(8, "y1")])
    await a.unregister_connection(8, "y1")
    assert await a.connection_count(7) == 2 and await a.connection_count(8) == 0
    # nothing of room:p or room:q is left but the connection records of user 7
    left_keys = [k async for k in clients.commands.scan_iter(match="vonix:presence:{*")]
    assert left_keys == [], "every channel emptied: none of its keys is left"


# --- nonces ------------------------------------------------------------------------------------
async def test_nonces_claim_once_and_return_the_first_offset(clients: RedisClients) -> None:
    nonces = create_nonces(clients)
    assert isinstance(nonces, RedisNonces)
    assert await nonces.claim(5, "n{1}") is None
    assert await nonces.claim(5, "n{1}") == -1  # pending
    await nonces.settle(5, "n{1}", 42)
    assert await nonces.claim(5, "n{1}") == 42 and await nonces.claim(6, "n{1}") is None


# --- cache -------------------------------------------------------------------------------------
async def _cache(redis: RedisClients) -> Cache:
    cache = Cache(RedisShared(redis))
    await cache.start()
    return cache


async def test_cache_shares_entries_and_invalidates_keys_tags_and_prefixes(clients: RedisClients) -> None:
    first, second = await _cache(clients), await _cache(clients)
    loads: list[str] = []

    def loader(value: str) -> Any:
        async def load() -> dict[str, str]:
            loads.append(value)
            return {"v": value}
        return load

    try:
        shared = first.shared
        assert isinstance(shared, RedisShared) and shared.prefix == (
            "vonix:{cache}:" if clients.cluster else "vonix:cache:")
        await _until(lambda: shared.coherent and second.shared.coherent)
        users_a, users_b = first.namespace("user"), second.namespace("user")
        for ident, tags in (("1", ["user:1", "team:a"]), ("2", ["user:2", "team:a"]), ("3", ["user:3"])):
            assert await first.get(users_a, ident, loader(ident), tags=tags) == {"v": ident}
        # the other replica reads the shared level: no load
        assert [await second.get(users_b, i, loader("again")) for i in "123"] == [{"v": i} for i in "123"]
        assert loads == ["1", "2", "3"]

        assert await first.invalidate(tags=["team:a"]) == 2  # both entries of the tag, everywhere
        await _until(lambda: second.peek(users_b, "1") is None and second.peek(users_b, "2") is None)
        assert second.peek(users_b, "3") is not None
        assert await second.get(users_b, "1", loader("1b")) == {"v": "1b"}
        await first.invalidate(keys=["user:3"])
        await _until(lambda: second.peek(users_b, "3") is None)
        assert await second.get(users_b, "3", loader("3b")) == {"v": "3b"}
        await first.invalidate(prefixes=["user:"])
        await _until(lambda: second.peek(users_b, "1") is None)
        assert [k async for k in clients.commands.scan_iter(match=shared.prefix + "k:*")] == []
        assert loads == ["1", "2", "3", "1b", "3b"]
    finally:
        await first.close()
        await second.close()


async def test_cache_store_is_refused_after_an_invalidation_it_did_not_see(clients: RedisClients) -> None:
    shared = RedisShared(clients)
    fetched = await shared.fetch("user:9")
    assert fetched.payload is None and fetched.token is not None
    await asyncio.sleep(0.002)
    await shared.invalidate(_invalidation(tags=("user:9",)))
    assert await shared.store("user:9", b"old", 60, ["user:9"], fetched.token) is False
    newer = await shared.fetch("user:9")
    assert await shared.store("user:9", b"new", 60, ["user:9"], newer.token) is True
    assert (await shared.fetch("user:9")).payload == b"new"


async def test_cluster_tag_invalidation_waits_for_members_a_store_added_meanwhile(
        cluster_node: ClusterNode) -> None:
    """The cluster invalidate script deletes only members it was given; one it was not given (a
    store between reading the set and invalidating) makes it change nothing and name it."""
    redis = RedisClients(cluster_node.url, Metrics(), cluster=True)
    await redis.commands.flushall()
    await redis.start()
    try:
        shared = RedisShared(redis)
        for key in ("user:1", "user:2"):
            token = (await shared.fetch(key)).token
            assert await shared.store(key, b"v", 60, ["team:a"], token) is True
        p = shared.prefix
        names = [p + "t:team:a", p + "v:t:team:a"]
        reply = await shared._invalidate(keys=[*names, p + "k:user:1"], args=[0, 1, 1000])
        assert reply == [0, [(p + "k:user:2").encode()]]
        assert await redis.commands.exists(p + "k:user:1", p + "k:user:2") == 2  # untouched
        await shared.invalidate(_invalidation(tags=("team:a",)))  # reads, then deletes both
        assert await redis.commands.exists(p + "k:user:1", p + "k:user:2", p + "t:team:a") == 0
        assert await redis.commands.exists(p + "v:t:team:a") == 1
    finally:
        await redis.close()


def _invalidation(**parts: Any) -> Any:
    from server.cache.backend import Invalidation

    return Invalidation(parts.get("keys", ()), parts.get("tags", ()), parts.get("prefixes", ()))


# --- rate limits -------------------------------------------------------------------------------
async def test_rate_limits_count_in_one_slot_per_decision_and_report_every_partition(
        clients: RedisClients) -> None:
    counts = RedisCounts(clients)
    window, bucket = Rule("login", 3, 60), Rule("publish", 2, 10, burst=2)
    decisions = [await counts.hit(window, "1.2.3.4") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0] and decisions[3].retry_after > 0
    assert not any(d.degraded for d in decisions)
    assert [(await counts.hit(bucket, "u:1")).allowed for _ in range(3)] == [True, True, False]
    assert (await counts.hit(bucket, "u:2")).allowed  # its own bucket
    totals, limited = await counts.snapshot()
    assert totals == {"login|allowed": 3, "login|limited": 1, "publish|allowed": 3, "publish|limited": 1}
    assert limited == {"login|1.2.3.4": 1, "publish|u:1": 1}
    if clients.cluster:  # the decisions spread over partitions, each its own slot
        tags = {counts._keys("login", "1.2.3.4")[0].split("}")[0], counts._keys("publish", "u:1")[0].split("}")[0],
                counts._keys("publish", "u:2")[0].split("}")[0]}
        assert len(tags) > 1 and len(counts._tags) == CLUSTER_PARTITIONS
    else:
        assert counts._keys("login", "k") == ["vonix:rl:login|k", *(
            f"vonix:rl:{kind}:{int(time.time() // 300)}" for kind in ("stats", "top"))]


# --- locks -------------------------------------------------------------------------------------
async def test_locks_acquire_extend_and_release_by_token(clients: RedisClients) -> None:
    lock = RedisLock(clients)
    token = await lock.acquire("maintenance:{vacuum}", 5)
    assert token is not None and await lock.acquire("maintenance:{vacuum}", 5) is None
    assert await lock.extend("maintenance:{vacuum}", token, 10) is True
    assert 5000 < await clients.commands.pttl("vonix:lock:maintenance:{vacuum}") <= 10000
    assert await lock.release("maintenance:{vacuum}", "not-the-token") is False
    assert await lock.extend("maintenance:{vacuum}", "not-the-token", 10) is False
    assert await lock.release("maintenance:{vacuum}", token) is True
    assert await lock.acquire("maintenance:{vacuum}", 5) is not None


# --- xp leaderboards and the single-key users --------------------------------------------------
async def test_xp_leaderboards_update_and_rebuild(clients: RedisClients, sqlite_template: Any,
                                                  tmp_path: Path) -> None:
    db = Database(parse_database_url(fresh_sqlite_url(sqlite_template, tmp_path)), Metrics())
    await db.connect()
    try:
        now = datetime.now(UTC)
        for name in ("ann", "ben", "cat"):
            await db.execute("test.user", users.insert().values(username=name, created_at=now, updated_at=now))
        ids = [r["id"] for r in await db.fetch_all("test.ids", sa.select(users.c.id).order_by(users.c.id))]
        xp = Xp(db, clients.commands)
        for user_id, amount in zip(ids, (30, 70, 50), strict=True):
            assert await xp.award(user_id, "friend_accepted", f"src-{user_id}", amount) == amount
        expected = [(ids[1], 70), (ids[2], 50), (ids[0], 30)]
        assert await xp.leaderboard("all") == expected and await xp.leaderboard("week") == expected
        await clients.commands.flushall()  # Redis lost the sets: rebuilt from the table
        assert await xp.leaderboard("week") == expected and await xp.leaderboard("all") == expected
        assert await clients.commands.exists("vonix:lb:all")
    finally:
        await db.disconnect()


async def test_bridge_health_alert_cooldown_and_replica_stats_share_redis(clients: RedisClients) -> None:
    node = SimpleNamespace(published=3, hub=SimpleNamespace(connections={}, by_user={}))
    resources = SimpleNamespace(redis=clients, cache=None, node=node, settings=SimpleNamespace(instance_id="r1"),
                                lifecycle=SimpleNamespace(uptime_seconds=5.0))
    health = BridgeHealth(resources)
    await health.put("discord", {"ok": True})
    got = await health.get("discord")
    assert got is not None and got["ok"] is True and got["stale"] is False
    alerter = Alerter(SimpleNamespace(alert_error_window=60, alert_cooldown=60), Breakers(), Metrics(),
                      clients.commands)
    assert await alerter._claim("redis_down") is True and await alerter._claim("redis_down") is False
    stats = ClusterStats(resources)
    await stats.beat()
    assert [r["instance"] for r in await stats.replicas()] == ["r1"]


# --- the audit itself --------------------------------------------------------------------------
async def test_every_script_is_audited(cluster_node: ClusterNode) -> None:
    """Runs each script of each component on the cluster; the audit must see every one of them
    and find no key that a script touched without declaring it."""
    redis = RedisClients(cluster_node.url, Metrics(), cluster=True)
    await redis.commands.flushall()
    await redis.start()
    audit = ScriptAudit(cluster_node.url)
    await audit.start()
    try:
        history = RedisHistory(redis.publisher)
        await history.publish("room:a", _parts("room:a", "x"))
        await history.publish_stored([("room:b", _parts("room:b", "y"), 1, "e")])
        await history.position("room:c")
        clock = FakeClock()
        presence = RedisPresence(redis.commands, ttl=10, clock=clock)
        await presence.join("room:a", "c1", _user(1))
        await presence.join("room:a", "c2", _user(2))
        await presence.heartbeat([("room:a", "c1")])
        await presence.leave("room:a", "c1", 1)
        clock.now += 20
        assert [user.user_id for _, user in await presence.sweep()] == [2]
        await presence.register_connection(1, "c1", 3)
        shared = RedisShared(redis)
        fetched = await shared.fetch("k")
        await shared.store("k", b"v", 10, ["t"], fetched.token)
        await shared.invalidate(_invalidation(keys=("k",), tags=("t",)))
        counts = RedisCounts(redis)
        await counts.hit(Rule("a", 1, 1), "k")
        await counts.hit(Rule("b", 1, 1, burst=1), "k")
        lock = RedisLock(redis)
        token = await lock.acquire("l", 5)
        assert token is not None
        await lock.extend("l", token, 5)
        await lock.release("l", token)

        scripts = [history._assign, history._ordered, history._epoch, presence._join, presence._leave,
                   presence._sweep, presence._heartbeat, presence._register, shared._fetch, shared._store,
                   shared._invalidate, counts._window, counts._bucket, lock._release, lock._extend]
        problems = await audit.verify()
        assert problems == []
        assert {s.sha for s in scripts} <= audit.seen, "some scripts never ran under the audit"
    finally:
        await audit.stop()
        await redis.close()


async def test_the_audit_catches_a_script_deriving_its_keys(cluster_node: ClusterNode) -> None:
    """The single-Redis batch script builds its key names from ARGV: a one-node Redis 7.0 cluster
    runs it, a multi-node cluster would refuse it by chance; the audit refuses it every time. The
    cluster client itself refuses a script whose declared keys span slots."""
    plain = aioredis.Redis.from_url(cluster_node.url)
    cluster = RedisClients(cluster_node.url, Metrics(), cluster=True)
    audit = ScriptAudit(cluster_node.url)
    await audit.start()
    try:
        frame = _parts("room:z", "z").build(1, "e")
        await plain.eval(_ORDERED_BATCH, 0, "vonix:", 10, 60, 0, 100, "1.0", "room:z", 1, "e", frame)
        problems = await audit.verify()
        assert any("touches undeclared" in p and "vonix:h:{room:z}:epoch" in p for p in problems), problems
        assert any("PUBLISH b'vonix:room:z' is broadcast" in p for p in problems), problems
        two_slots = ("vonix:h:{room:a}:offset", "vonix:h:{room:b}:offset")
        for call in (lambda: cluster.commands.register_script("return 1")(keys=two_slots),
                     lambda: cluster.commands.eval("return 1", 2, *two_slots)):
            with pytest.raises((RedisClusterException, ClusterCrossSlotError)):  # the client's or the node's
                await call()
    finally:
        await audit.stop()
        await plain.aclose()
        await cluster.close()
