"""Redis Cluster benchmark (issue 19): the same load on one redis-server and on a Redis Cluster.

Why: one Redis carries every publish of every replica. On a cluster the broker uses sharded
pub/sub (`SSUBSCRIBE`/`SPUBLISH`) and each channel's history keys share its hash slot, so a
channel's messages should cost only the master owning that slot. This bench shows whether the
Redis work really spreads over the masters, and what the cluster costs in deliveries/s and latency
next to a single Redis, measured in the same run on the same machine.

Deployments (everything on 127.0.0.1, servers, PostgreSQL and every redis-server pinned to core 0,
the Node load generators to core 1, as in bench/bench_fanout.py): two `vonix serve` replicas with
PostgreSQL and
- single: one redis-server (`PUBLISH`, the reference);
- cluster: 3 masters + 3 replicas (tests/support/cluster.py), `REDIS_CLUSTER=true`.

Scenarios, each on both deployments:
- fan-out: BENCH_SUBSCRIBERS (2,000) clients split over BENCH_CLUSTER_CHANNELS (3) ephemeral
  `bot:` channels, one bot per channel, whose names are picked so that channel k's shard channel
  (`shard_topic`, the key the broker SSUBSCRIBEs and the history script SPUBLISHes to) hashes to
  master k % 3. One load generator process per channel (loadgen.js's fan-out drives one channel),
  all measuring the same window: closed loop, BENCH_WINDOW (16) messages in flight per channel
  from BENCH_CLUSTER_PUBLISHERS (2) connections, one on each replica. Latency is the worst channel's.
- rooms: BENCH_ROOM_CLIENTS (2,000) clients in rooms of BENCH_ROOM_SIZE (10), each publishing
  BENCH_ROOM_RATE (1) message/s in its persisted `room:` channel (stored in PostgreSQL).

Redis CPU per shard: the CPU (user+sys, from /proc/<pid>/stat: what `INFO cpu` reports as
used_cpu_user+used_cpu_sys, but read by the load generator at the exact edges of the measured
window) of each master, as a share of a core and as a share of all masters' CPU; the replicas'
CPU (replication) is shown apart. `INFO stats` before and after each run gives the commands each
master processed; `pubsubshard_channels` the shard channels it holds.

Knobs: BENCH_SUBSCRIBERS, BENCH_SECONDS, BENCH_WINDOW, BENCH_ROOM_CLIENTS, BENCH_ROOM_SIZE,
BENCH_ROOM_RATE, BENCH_USERS, BENCH_RETRIES as in bench_fanout; BENCH_CLUSTER_CHANNELS,
BENCH_CLUSTER_PUBLISHERS, BENCH_CLUSTER_CONCURRENCY (100); BENCH_JSON (raw results to this file),
BENCH_KEEP (keep the server logs). Run: `python -m bench cluster`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from bench.bench_fanout import (
    CLK_TCK,
    LOADGEN_CORE,
    SERVER_CORE,
    TASKSET,
    Config,
    Deployment,
    LoadGen,
    Run,
    Server,
    Stack,
    connect,
    create_rooms,
    measure,
    pin_pid,
    preflight,
    progress,
    start_vonix,
    vonix_cli,
    vonix_env,
    vonix_users,
)
from bench.table import print_table, print_targets
from realtime.history.redis import shard_topic
from tests.support.cluster import RedisClusterServers
from tests.support.services import RedisServer

PREFIX = "vonix:"  # the default key prefix (realtime/broker/base.py)
MAX_MASTER_SHARE = 0.60  # target: no master takes more than this share of the Redis CPU
MIN_CLUSTER_RATIO = 0.7  # target: cluster deliveries/s at least this times single Redis'


@dataclass
class ClusterConfig:
    channels: int = field(default_factory=lambda: int(os.environ.get("BENCH_CLUSTER_CHANNELS") or 3))
    publishers: int = field(default_factory=lambda: int(os.environ.get("BENCH_CLUSTER_PUBLISHERS") or 2))
    # Connections opened at once, as in bench_fanout.
    concurrency: int = field(default_factory=lambda: int(os.environ.get("BENCH_CLUSTER_CONCURRENCY") or 100))


# --- Redis deployments ------------------------------------------------------------------------

@dataclass
class Backend:
    """The Redis side of one deployment: its masters (one for single Redis) and their replicas."""

    name: str
    path: str  # how a message travels, for the tables
    url: str
    cluster: bool
    masters: list[RedisServer]
    replicas: list[RedisServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.master_pids = [node.pid() for node in self.masters]
        self.replica_pids = [node.pid() for node in self.replicas]
        for pid in (*self.master_pids, *self.replica_pids):
            pin_pid(pid, SERVER_CORE)

    def client(self, node: RedisServer) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=10)

    def flush(self) -> None:
        for node in self.masters:
            with self.client(node) as client:
                client.flushall()

    def pid_groups(self) -> dict[str, list[int]]:
        """CPU groups for the load generator: `redis` (every node, so the machine's other load is
        computed right), one group per master, and the replicas."""
        groups = {"redis": [*self.master_pids, *self.replica_pids], "replicas": self.replica_pids}
        groups.update({f"master{i}": [pid] for i, pid in enumerate(self.master_pids)})
        return groups

    def stats(self) -> list[dict[str, int]]:
        """Per master: commands processed so far and shard channels held now (`INFO stats`)."""
        out = []
        for node in self.masters:
            with self.client(node) as client:
                info = client.info("stats")
            out.append({"commands": int(info["total_commands_processed"]),
                        "shard_channels": int(info.get("pubsubshard_channels", 0)),
                        "channels": int(info.get("pubsub_channels", 0))})
        return out

    def pick_channels(self, count: int) -> list[str]:
        """`bot:` channel names, channel k on master k % masters (by the slot of the shard channel the
        broker uses); for a single Redis any names do, so both deployments use the same ones."""
        if not self.cluster:
            return [f"bot:fan{k}" for k in range(count)]
        owners = _slot_owners(self.client(self.masters[0]))
        ports = [node.port for node in self.masters]
        picked: list[str] = []
        candidate = 0
        while len(picked) < count:
            channel = f"bot:fan{candidate}"
            if owners[key_slot(shard_topic(PREFIX, channel).encode())] == ports[len(picked) % len(ports)]:
                picked.append(channel)
            candidate += 1
        return picked


def _slot_owners(client: redis.Redis) -> list[int]:
    """The master port owning each of the 16,384 slots (`CLUSTER SHARDS`, Redis 7)."""
    owners = [0] * 16384
    with client:
        shards = client.execute_command("CLUSTER", "SHARDS")
    for shard in shards:
        shard = _pairs(shard)
        ranges = shard[b"slots"]
        master = next(_pairs(n) for n in shard[b"nodes"] if _pairs(n)[b"role"] == b"master")
        for start, end in zip(ranges[::2], ranges[1::2], strict=True):
            owners[int(start):int(end) + 1] = [int(master[b"port"])] * (int(end) - int(start) + 1)
    return owners


def _pairs(reply: Any) -> dict[bytes, Any]:
    if isinstance(reply, dict):
        return {k if isinstance(k, bytes) else str(k).encode(): v for k, v in reply.items()}
    return dict(zip(reply[::2], reply[1::2], strict=True))


def single_backend(stack: Stack) -> Backend:
    return Backend("single Redis", "1 redis-server, PUBLISH", stack.redis.url, False, [stack.redis])


def cluster_backend(servers: RedisClusterServers) -> Backend:
    masters = sorted((n for n in servers.nodes if n.command("role").startswith("master")), key=lambda n: n.port)
    replicas = [n for n in servers.nodes if n not in masters]
    return Backend("cluster", f"{len(masters)} masters + {len(replicas)} replicas, SPUBLISH", servers.url, True,
                   list(masters), list(replicas))


# --- Vonix on a backend -----------------------------------------------------------------------

def create_bots(env: dict[str, str], channels: list[str]) -> list[str]:
    """One bot per `bot:<name>` channel (only that bot publishes there); their tokens."""
    tokens = []
    for channel in channels:
        out = vonix_cli(env, "create-bot", channel.removeprefix("bot:"), "--scopes", "publish,subscribe")
        match = re.search(r"token \(shown once, store it now\): (\S+)", out)
        if match is None:
            raise RuntimeError(f"cannot read the bot token from: {out}")
        tokens.append(match.group(1))
    return tokens


def deploy(stack: Stack, backend: Backend, channels: list[str], users: int) -> tuple[Deployment, list[str]]:
    """Two replicas on a fresh PostgreSQL database and the flushed backend; the bots' tokens."""
    database, bot = stack.database(scaled=True)
    backend.flush()
    env = vonix_env(database, backend.url, 2)
    if backend.cluster:
        env["REDIS_CLUSTER"] = "true"
    bots = create_bots(env, channels)
    servers: list[Server] = []
    try:
        servers.extend(start_vonix(env, stack.dir) for _ in range(2))
        deployment = Deployment(servers, "/ws", bot, [], "offset",
                                lambda: {"db": stack.postgres_pids(), **backend.pid_groups()})
        deployment.tokens = vonix_users(deployment.base_url, users)
    except Exception:
        for server in servers:
            server.stop()
        raise
    return deployment, bots


# --- scenarios --------------------------------------------------------------------------------

@dataclass
class Result:
    scenario: str
    backend: Backend
    run: Run
    stats_before: list[dict[str, int]]
    stats_after: list[dict[str, int]]

    def master_cpu(self) -> list[float]:
        return [self.run.cpu(f"master{i}") for i in range(len(self.backend.masters))]

    def commands(self) -> list[int]:
        return [a["commands"] - b["commands"] for a, b in zip(self.stats_after, self.stats_before, strict=True)]

    def channels(self) -> list[int]:
        return [s["shard_channels"] if self.backend.cluster else s["channels"] for s in self.stats_before]


def merge_fanout(raws: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the concurrent per-channel runs: sums of counts and rates, the worst channel's
    latency, each process group's CPU averaged over the generators' (nearly identical) windows and
    the generators' own CPU summed (they share core 1)."""
    summed = ("clients", "published", "acked", "refused", "expected", "received", "lost", "order_errors", "closed",
              "deliveries_per_s", "publishes_per_s")
    merged: dict[str, Any] = {k: sum(r[k] for r in raws) for k in summed}
    merged["window_seconds"] = sum(r["window_seconds"] for r in raws) / len(raws)
    merged["drain_seconds"] = max(r["drain_seconds"] for r in raws)
    merged["latency_ms"] = {k: max((r["latency_ms"][k] for r in raws if r["latency_ms"].get(k) is not None),
                                   default=None) for k in ("p50", "p99", "max")}
    ticks = {k: sum(r["cpu_ticks"][k] for r in raws) / len(raws) for k in raws[0]["cpu_ticks"]}
    for own in ("loadgen", "loadgen_sys"):
        ticks[own] = sum(r["cpu_ticks"][own] for r in raws)
    merged["cpu_ticks"] = ticks
    merged["per_channel"] = raws
    return merged


def connect_fanout(lgs: list[LoadGen], deployment: Deployment, channels: list[str], cfg: Config) -> None:
    """Generator k's clients all on channel k, alternating between the replicas."""
    per = max(1, cfg.subscribers // len(channels))
    for lg, channel in zip(lgs, channels, strict=True):
        connect(lg, deployment, cfg, per, [channel], per)


def fanout(lgs: list[LoadGen], deployment: Deployment, bots: list[str], channels: list[str], cfg: Config,
           ccfg: ClusterConfig) -> dict[str, Any]:
    """Every channel's closed loop at once, one generator each (started within a millisecond)."""
    def one(i: int) -> dict[str, Any]:
        return lgs[i].call(cmd="fanout", urls=deployment.urls, token=bots[i], channel=channels[i], rate=None,
                           window=cfg.window, publishers=ccfg.publishers, warmup=cfg.warmup, seconds=cfg.seconds,
                           pids=deployment.pids(), check_order=True)

    with ThreadPoolExecutor(len(channels)) as pool:
        return merge_fanout(list(pool.map(one, range(len(channels)))))


def connect_rooms(lg: LoadGen, deployment: Deployment, cfg: Config) -> None:
    names = [f"cl-{i:04d}" for i in range(max(1, cfg.room_clients // cfg.room_size))]
    create_rooms(deployment.base_url, deployment.tokens[0], names)
    connect(lg, deployment, cfg, cfg.room_clients, [f"room:{n}" for n in names], cfg.room_size)


def rooms(lg: LoadGen, deployment: Deployment, cfg: Config) -> dict[str, Any]:
    # as bench_fanout: every client's first message (its membership lookup) falls in the warm-up
    warmup = max(cfg.warmup, min(4.0, 3 / cfg.room_rate)) if cfg.seconds >= 2 else cfg.warmup
    return lg.call(cmd="rooms", rate=cfg.room_rate, warmup=warmup, seconds=cfg.seconds, pids=deployment.pids())


def run_backend(stack: Stack, backend: Backend, lgs: list[LoadGen], cfg: Config,
                ccfg: ClusterConfig, channels: list[str]) -> list[Result]:
    """Both scenarios on one deployment (fresh database, flushed Redis) of two replicas."""
    progress(f"{backend.name}: starting two replicas")
    deployment, bots = deploy(stack, backend, channels, cfg.users)
    scenarios: list[tuple[str, Callable[[], None], Callable[[], dict[str, Any]]]] = [
        (f"fan-out: {cfg.subscribers:,} subs on {len(channels)} bot: channels",
         lambda: connect_fanout(lgs, deployment, channels, cfg),
         lambda: fanout(lgs, deployment, bots, channels, cfg, ccfg)),
        (f"rooms: {cfg.room_clients:,} clients, rooms of {cfg.room_size}, {cfg.room_rate:g} msg/s each",
         lambda: connect_rooms(lgs[0], deployment, cfg), lambda: rooms(lgs[0], deployment, cfg))]
    results = []
    try:
        for label, prepare, call in scenarios:
            progress(f"{backend.name}: {label}")
            prepare()
            results.append(_measured(label, backend, call, cfg))
            for lg in lgs:
                lg.call(cmd="close")
    finally:
        deployment.stop()
    return results


def _measured(label: str, backend: Backend, call: Callable[[], dict[str, Any]], cfg: Config) -> Result:
    """bench_fanout.measure (a run disturbed by other processes is repeated, the least disturbed
    kept) with each master's counters read around every run."""
    counters: dict[int, tuple[list[dict[str, int]], list[dict[str, int]]]] = {}

    def counted() -> dict[str, Any]:
        before = backend.stats()
        raw = call()
        counters[id(raw)] = (before, backend.stats())
        return raw

    run = measure(counted, f"{label} {backend.name}", cfg.retries)
    return Result(label, backend, run, *counters[id(run.raw)])


# --- report -----------------------------------------------------------------------------------

def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _slash(values: list[str]) -> str:
    return " / ".join(values)


def _main_row(r: Result, ratio: float | None) -> list[object]:
    run = r.run
    per_core = run.deliveries / run.server_cpu if run.server_cpu else 0.0
    return [r.scenario, r.backend.name, r.backend.path, run.rate, "-" if ratio is None else f"{ratio:.2f}x",
            per_core, _ms(run.latency("p50")), _ms(run.latency("p99")),
            f"{run.lost + run.disorder:,} of {run.expected:,}", *(_pct(run.cpu(group) / run.seconds) for group in
                                                                  ("server", "redis", "db", "loadgen")),
            _pct(run.other_load)]


def _shard_row(r: Result) -> list[object]:
    """Each master's CPU (share of a core, share of all masters'), commands and channels."""
    run, cpu, commands = r.run, r.master_cpu(), r.commands()
    total, issued = sum(cpu), sum(commands)
    return [r.scenario, r.backend.name, _pct(total / run.seconds), _slash([_pct(c / run.seconds) for c in cpu]),
            _slash([_pct(c / total) if total else "-" for c in cpu]),
            _pct(run.cpu("replicas") / run.seconds) if r.backend.replicas else "-",
            _slash([f"{c:,}" for c in commands]), _slash([_pct(c / issued) if issued else "-" for c in commands]),
            _slash([str(c) for c in r.channels()])]


def _warnings(r: Result) -> list[str]:
    run, where = r.run, f"{r.scenario}, {r.backend.name}"
    out = []
    if run.raw.get("closed") or run.raw.get("refused"):
        out.append(f"WARNING: {where}: {run.raw.get('closed')} connections closed, "
                   f"{run.raw.get('refused')} publishes refused")
    if run.loadgen_cpu > run.server_cpu:
        out.append(f"WARNING: {where}: the load generators used more CPU than the replicas; the result may be "
                   "limited by the client")
    if run.other_load > 0.15:
        out.append(f"note: {where}: other processes used {run.other_load:.0%} of a core during the run "
                   "(shared machine)")
    return out


def _targets(r: Result, ratio: float | None) -> list[tuple[str, str, str]]:
    """A cluster row's targets: the Redis CPU spreads over the masters; throughput holds up."""
    cpu, total = r.master_cpu(), sum(r.master_cpu())
    spread = f"{r.scenario}: no master takes more than {MAX_MASTER_SHARE:.0%} of the Redis CPU ({len(cpu)} masters)"
    if total:
        worst = max(cpu) / total
        first = (spread, f"largest share {worst:.0%}", "met" if worst <= MAX_MASTER_SHARE else "MISSED")
    else:  # CPU is counted in ticks: a tiny run may see none
        first = (spread, "no Redis CPU measured", "n/a")
    lost = r.run.lost + r.run.disorder
    met = ratio is not None and ratio >= MIN_CLUSTER_RATIO and lost == 0
    return [first, (f"{r.scenario}: cluster deliveries/s >= {MIN_CLUSTER_RATIO}x single Redis, zero loss",
                     f"{'-' if ratio is None else f'{ratio:.2f}x'}, {lost} lost", "met" if met else "MISSED")]


def report(results: list[Result]) -> list[tuple[str, str, str]]:
    """Print the tables; returns the targets."""
    targets: list[tuple[str, str, str]] = []
    warnings: list[str] = []
    rows, shard_rows = [], []
    order = list(dict.fromkeys(r.scenario for r in results))
    for r in sorted(results, key=lambda r: order.index(r.scenario)):  # each scenario's rows together
        single = next((s for s in results if s.scenario == r.scenario and not s.backend.cluster), None)
        ratio = r.run.rate / single.run.rate if single and single.run.rate else None
        rows.append(_main_row(r, ratio))
        shard_rows.append(_shard_row(r))
        warnings += _warnings(r)
        if r.backend.cluster:
            targets += _targets(r, ratio)
    print_table("Redis Cluster vs single Redis: 2 vonix replicas + PostgreSQL; deliveries/s in the measured window "
                "(fan-out: closed loop, latency of the worst channel; rooms: fixed rate), per second of Vonix CPU, "
                "CPU as a share of a core (redis: every node)",
                ["scenario", "backend", "path", "deliveries/s", "vs single", "per vonix core-s", "p50 ms", "p99 ms",
                 "lost", "vonix cpu", "redis cpu", "pg cpu", "loadgen cpu", "other load"], rows)
    print_table("Redis CPU per master (shard 1 / 2 / 3; /proc, 10 ms ticks): share of a core, share of all masters' "
                "Redis CPU; commands each master processed (INFO stats) and the channels it holds",
                ["scenario", "backend", "masters cpu", "per master", "share of redis cpu", "replicas cpu",
                 "commands", "commands share", "channels"], shard_rows)
    print_targets("Targets (issue 19, Redis Cluster)", targets, warnings)
    return targets


def main() -> int:
    cfg, ccfg = Config(), ClusterConfig()
    cfg.concurrency = ccfg.concurrency
    preflight()
    started = time.monotonic()
    stack = Stack(cfg)
    servers = RedisClusterServers()
    lgs: list[LoadGen] = []
    results: list[Result] = []
    try:
        progress("starting the Redis Cluster (3 masters + 3 replicas)")
        servers.start()
        backends = [single_backend(stack), cluster_backend(servers)]
        channels = backends[1].pick_channels(ccfg.channels)
        lgs = [LoadGen() for _ in channels]
        for backend in backends:
            results += run_backend(stack, backend, lgs, cfg, ccfg, channels)
    finally:
        for lg in lgs:
            lg.close()
        servers.cleanup()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept the server logs in {stack.dir}", file=sys.stderr)
            stack.dir = Path(tempfile.mkdtemp())
        stack.cleanup()
    print(f"bench_cluster: {os.cpu_count()} cores, servers and every redis-server on core {SERVER_CORE}"
          f"{'' if TASKSET else ' (NOT pinned: no taskset)'}, {len(lgs)} load generators on core {LOADGEN_CORE}; "
          f"{cfg.seconds:g} s windows, {time.monotonic() - started:.0f} s in all\n", flush=True)
    report(results)
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps({
            "config": {"subscribers": cfg.subscribers, "seconds": cfg.seconds, "window": cfg.window,
                       "room_clients": cfg.room_clients, "room_size": cfg.room_size, "room_rate": cfg.room_rate,
                       "channels": ccfg.channels, "publishers": ccfg.publishers, "clk_tck": CLK_TCK},
            "results": [{"scenario": r.scenario, "backend": r.backend.name, "run": r.run.raw,
                         "master_cpu_seconds": r.master_cpu(), "commands": r.commands(), "channels": r.channels()}
                        for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
