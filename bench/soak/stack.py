"""What the soak runs on: its own PostgreSQL, its own Redis Cluster (3 masters + 3 replicas), three
`vonix serve` replicas as subprocesses (so `kill -9` is a real SIGKILL) and the proxy in front.

Each piece is the project's own test helper (tests/support/services.py, cluster.py, replica.py), so
the soak stops and starts exactly what the integration tests do: PostgreSQL is stopped and started
again on its data directory and port, a Redis master is SIGKILLed and started again from its
`nodes.conf` (it rejoins as a replica of the node promoted meanwhile), a replica is started again on
its port.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.crc import key_slot

from bench.bench_fanout import SECRET, create_rooms, vonix_cli, vonix_env
from bench.members import mint_members
from realtime.history.redis import shard_topic
from tests.support.cluster import ClusterNode, RedisClusterServers, _slot_ranges
from tests.support.replica import Replica
from tests.support.services import PostgresServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_PREFIX = "vonix:"
CLK_TCK = os.sysconf("SC_CLK_TCK")  # the default key prefix (realtime/broker/base.py)


def replica_env(database_url: str, redis_url: str, drain_seconds: float) -> dict[str, str]:
    """The benches' environment (bench_fanout.vonix_env), with the production defaults put back
    where the benches lift them: the per-connection publish bucket and the connection cap per user
    are what a member meets. The HTTP rate limits stay off: the soak creates its rooms through the
    API from one address. Tokens outlive the run (the default 15 minutes is shorter than setup plus
    a 10-minute soak; `refresh` is not what this soak tests)."""
    env = vonix_env(database_url, redis_url, replicas=3)
    for name in ("WS_MAX_CONNECTIONS_PER_USER", "WS_PUBLISH_RATE", "WS_PUBLISH_BURST"):
        env.pop(name, None)
    env.update({"REDIS_CLUSTER": "true", "REDIS_HEALTH_INTERVAL": "0.5", "DRAIN_SECONDS": f"{drain_seconds:g}",
                "ACCESS_TOKEN_TTL": "14400", "MIGRATE_ON_START": "false", "SECRET_KEY": SECRET,
                "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"})
    return env


@dataclass
class Sample:
    """One replica's resources at one moment (from /proc and its /metrics). `pg_fds` and
    `redis_fds`: its sockets to PostgreSQL and to the cluster's nodes (connection pools, which
    may grow under load and after a failover); the rest are its own files, listeners and clients."""

    t: float
    rss_kib: int
    fds: int
    threads: int
    connections: int
    subscriptions: int
    pg_fds: int = 0
    redis_fds: int = 0
    cpu_s: float = 0.0
    tasks: int = -1  # the replica's vonix_asyncio_tasks gauge (-1: unreadable)


def proc_sample(pid: int) -> tuple[int, int, int, float]:
    """(RSS KiB, open fds, threads, CPU seconds) of a live process; zeros once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0, 0, 0, 0.0
    values = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if ":" in line and line.split()[1:]}
    ticks = stat[stat.rindex(")") + 2:].split()
    cpu = (int(ticks[11]) + int(ticks[12])) / CLK_TCK
    return int(values.get("VmRSS", 0)), fds, int(values.get("Threads", 0)), cpu


def socket_peers(pid: int) -> Counter[int]:
    """How many of the process's TCP sockets go to each remote port (from /proc/net/tcp)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    peers: Counter[int] = Counter()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[9] in inodes and parts[3] == "01":  # ESTABLISHED
                    peers[int(parts[2].rsplit(":", 1)[1], 16)] += 1
    return peers


def _owner(ranges: list[tuple[int, int, int]], slot: int) -> int | None:
    return next((port for start, end, port in ranges if start <= slot <= end), None)


def gauge(text: str, name: str) -> int:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else -1


@dataclass
class Node:
    """One replica: its `Replica` process, its name in the report and its life (starts, ends)."""

    name: str
    replica: Replica
    pg_port: int = 0
    redis_ports: tuple[int, ...] = ()
    starts: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        process = self.replica.process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        self.replica.start(timeout=60)
        self.starts.append(time.time())

    def sample(self) -> Sample | None:
        pid = self.pid
        if pid is None:
            return None
        rss, fds, threads, cpu = proc_sample(pid)
        peers = socket_peers(pid)
        connections = subscriptions = tasks = -1
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"{self.replica.base_url}/metrics", timeout=2).text
            connections = gauge(text, "vonix_ws_connections")
            subscriptions = gauge(text, "vonix_ws_subscriptions")
            tasks = gauge(text, "vonix_asyncio_tasks")
        found = Sample(time.time(), rss, fds, threads, connections, subscriptions,
                       pg_fds=peers.get(self.pg_port, 0), redis_fds=sum(peers.get(p, 0) for p in self.redis_ports),
                       cpu_s=cpu, tasks=tasks)
        self.samples.append(found)
        return found


class Stack:
    def __init__(self, run_dir: Path, members: int, rooms: int, drain_seconds: float,
                 progress: Callable[[str], None]) -> None:
        self.run_dir = run_dir
        self.members = members
        self.room_count = rooms
        self.drain_seconds = drain_seconds
        self.progress = progress
        self.postgres: PostgresServer | None = None
        self.cluster: RedisClusterServers | None = None
        self.nodes: list[Node] = []
        self.proxy: subprocess.Popen[bytes] | None = None
        self.proxy_port = 0
        self.env: dict[str, str] = {}
        self.tokens: list[str] = []
        self.user_ids: list[int] = []
        self.rooms: list[str] = []

    # --- start --------------------------------------------------------------------------------

    def start(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            pg = pool.submit(lambda: PostgresServer().init().start())
            cluster = pool.submit(lambda: RedisClusterServers().start())
            self.postgres, self.cluster = pg.result(), cluster.result()
        self.postgres.psql("CREATE DATABASE soak")
        self.env = replica_env(self.postgres.url("soak"), self.cluster.url, self.drain_seconds)
        self.progress("PostgreSQL and the Redis Cluster (3 masters + 3 replicas) are up; migrating")
        vonix_cli(self.env, "migrate")
        started = time.monotonic()
        self.tokens = mint_members(self.env, "soak", self.members)
        rows = self.postgres.psql("SELECT username || ' ' || id FROM users WHERE username LIKE 'soak%' "
                                  "ORDER BY username", "soak").split("\n")
        ids = {name: int(uid) for name, uid in (row.split() for row in rows if row)}
        self.user_ids = [ids[f"soak{i:05d}"] for i in range(self.members)]
        self.progress(f"{self.members:,} members written in {time.monotonic() - started:.1f} s; starting 3 replicas")
        self.nodes = [Node(f"R{i + 1}", Replica(self.env, log_path=self.run_dir / f"replica-{i + 1}.log"),
                           self.postgres.port, tuple(n.port for n in self.cluster.nodes)) for i in range(3)]
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(Node.start, self.nodes))
        self.rooms = [f"soak-{i:03d}" for i in range(self.room_count)]
        create_rooms(self.nodes[0].replica.base_url, self.tokens[0], self.rooms)
        self.proxy_port = free_port()
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "bench.soak.proxy", "--port", str(self.proxy_port), "--backends",
             ",".join(str(n.replica.port) for n in self.nodes)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=open(self.run_dir / "proxy.log", "ab"), stderr=subprocess.STDOUT)
        wait_port(self.proxy_port)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.proxy_port}/ws"

    # --- what the chaos schedule does -----------------------------------------------------

    def kill_replica(self, node: Node) -> None:
        node.replica.signal(signal.SIGKILL)
        node.replica.wait(10)

    def drain_replica(self, node: Node) -> float:
        """SIGTERM; the seconds until the process exited (it drains first)."""
        started = time.monotonic()
        node.replica.signal(signal.SIGTERM)
        node.replica.wait(self.drain_seconds + 30)
        return time.monotonic() - started

    def restart_replica(self, node: Node) -> None:
        node.replica.stop()
        node.start()

    def slot_owners(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, master port) as a live node sees the cluster now: one
        `CLUSTER SLOTS`, not one round of redis-cli calls per room."""
        assert self.cluster is not None
        for node in self.cluster.live():
            ranges = _slot_ranges(node.command("cluster", "slots"))
            if ranges:
                return ranges
        return []

    def room_slots(self) -> list[int]:
        return [key_slot(shard_topic(REDIS_PREFIX, f"room:{room}").encode()) for room in self.rooms]

    def busiest_master(self) -> tuple[ClusterNode, int]:
        """The master owning the most rooms' slots (the shard channel's slot: where the room's
        pub/sub and hot history live), and how many rooms that is."""
        assert self.cluster is not None
        ranges = self.slot_owners()
        counts = Counter(_owner(ranges, slot) for slot in self.room_slots())
        port, rooms = counts.most_common(1)[0]
        return next(n for n in self.cluster.nodes if n.port == port), rooms

    def fail_over(self, master: ClusterNode, rejoin_after: float) -> dict[str, Any]:
        """SIGKILL the master; wait for its replica's promotion; start it again (it rejoins as a
        replica); wait for the whole cluster to be ok. Returns the times (seconds)."""
        assert self.cluster is not None
        ranges = self.slot_owners()
        slot = next(s for s in self.room_slots() if _owner(ranges, s) == master.port)
        started = time.monotonic()
        master.kill()
        promoted = None
        while time.monotonic() - started < 30:
            owner = _owner(self.slot_owners(), slot)
            if owner not in (None, master.port):
                promoted = time.monotonic() - started
                break
            time.sleep(0.1)
        time.sleep(rejoin_after)
        master.start()
        self.cluster.wait_ok(timeout=60)
        role = master.command("role").split("\n")[0].strip()
        return {"promoted_s": promoted, "rejoined_s": time.monotonic() - started, "role_after": role}

    def restart_postgres(self, outage: float) -> float:
        """Stop PostgreSQL (fast: sessions are cut), keep it down `outage` s, start it on the same
        data directory and port. Returns the seconds it was unreachable."""
        assert self.postgres is not None
        started = time.monotonic()
        self.postgres.stop("fast")
        time.sleep(outage)
        self.postgres.start()
        return time.monotonic() - started

    # --- what the end reads -----------------------------------------------------------------

    def stored(self) -> list[tuple[str, int, int | None, str | None, str | None]]:
        """Every stored message: (channel, offset, author id, nonce, text)."""
        assert self.postgres is not None
        out = self.postgres.psql(
            "COPY (SELECT c.name, m.\"offset\", m.author_id, m.nonce, m.data->>'text' FROM messages m "
            "JOIN channels c ON c.id = m.channel_id WHERE c.name LIKE 'room:soak-%' OR c.kind = 'dm') "
            "TO STDOUT WITH (FORMAT csv)", "soak")
        import csv
        import io

        rows = []
        for name, offset, author, nonce, text in csv.reader(io.StringIO(out)):
            rows.append((name, int(offset), int(author) if author else None, nonce or None, text or None))
        return rows

    def hot_state(self, channels: list[str]) -> dict[str, tuple[int | None, int]]:
        """Per channel, Redis's hot history now: its `offset` key and how many messages wait in
        `pending` (parked behind a missing offset): where a lost message is stuck, if it is."""
        assert self.cluster is not None
        from redis.cluster import RedisCluster

        client = RedisCluster(host="127.0.0.1", port=self.cluster.live()[0].port, socket_timeout=5)
        try:
            state = {}
            for channel in channels:
                base = f"{REDIS_PREFIX}h:{{{channel}}}:"
                offset = client.get(base + "offset")
                state[channel] = (int(offset) if offset is not None else None, int(client.zcard(base + "pending")))
            return state
        finally:
            client.close()

    def last_offsets(self) -> dict[str, int]:
        assert self.postgres is not None
        out = self.postgres.psql("SELECT name || ' ' || last_offset FROM channels WHERE name LIKE 'room:soak-%' "
                                 "OR kind = 'dm'", "soak")
        return {name: int(offset) for name, offset in (row.split() for row in out.split("\n") if row)}

    # --- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.replica.stop()
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait(5)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.cleanup()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.cleanup()
