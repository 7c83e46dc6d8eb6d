"""Reconnect storm benchmark (issue 15, item 4): a replica drains while messages keep flowing.

Two Vonix replicas in scaled mode (PostgreSQL + Redis), A and B, each bound to 127.0.0.1 and pinned
with Redis and PostgreSQL to core 0; the load generator (`bench/loadgen.js`, `storm_connect` and
`storm` commands) on core 1:

1. BENCH_STORM_CONNECTIONS (10,000) clients connect to replica A only (token on the upgrade; the
   tokens of BENCH_STORM_USERS (100) users registered through the HTTP API, each used by many
   connections) and subscribe to 3 of BENCH_STORM_ROOMS (100) rooms `room:storm-NNN` each, in one
   batch subscribe (BENCH_STORM_BATCH=0: one subscribe per room). Every room gets the same number
   of clients (300 at the defaults).
2. BENCH_STORM_PUBLISHERS (4) connections of a bot on replica B publish BENCH_STORM_RATE (200)
   messages/s in total, round robin over the rooms, for the whole run: BENCH_STORM_BEFORE (2 s)
   before the drain, during it, and BENCH_STORM_AFTER (2 s) after every client is back. The highest
   acknowledged offset of each room is recorded (replies are matched by id).
3. The load generator sends SIGTERM to replica A: it drains (`server/ops/drain.py`: readiness 503,
   connections closed with 1012 at random moments over DRAIN_SECONDS * 0.5; DRAIN_SECONDS is
   BENCH_STORM_DRAIN_SECONDS, 10 by default: a 5 s window). Each client closed reconnects to
   replica B after a random jitter of up to BENCH_STORM_JITTER_MS (250) and resubscribes its rooms
   with `since` (the last offset and epoch it saw per room).
4. Publishing stops; once every publish is acknowledged, the load generator waits until every
   client holds every room's last acknowledged offset (at most 10 s), then counts, for each client
   and room, every offset from its first subscribe reply's offset + 1 up to the room's last
   acknowledged offset: seen exactly once (live or in `missed`), not at all (lost) or more than
   once (duplicates).

Reported: time from SIGTERM until the last client is resubscribed; per client, close seen to
resubscribe reply (p50/p99/max, including the jitter); lost, duplicates, failed reconnects, how
many recoveries answered `recovered: false`; CPU of replica B, of Redis + PostgreSQL and of the load
generator between SIGTERM and the last client back.

The reference (`bench/reference_server.py`, on `websockets`) runs the same storm where it can: two
replicas through Redis, clients connected to A, publishers on B, A stopped, every client reconnects
to B and subscribes again (three single subscribes: it has no batch). It has no drain and no
offsets, history or `since`: only its reconnect times are measured, not loss. A is stopped with
SIGKILL (BENCH_STORM_REFERENCE_SIGNAL=TERM for SIGTERM): on SIGTERM `websockets` closes every
connection at once with 1001, a closing handshake each, which here cost A 16 s of the core B shares
(the last close came 32 s after the signal, 2 of 10,000 clients were back within 30 s): that
measures its shutdown, not the storm. SIGKILL drops every connection at once (1006): the herd B
must absorb.

Other knobs: BENCH_SERVERS (reference,vonix), BENCH_STORM_MAX_WAIT (30: clients not back by then
are counted as not back), BENCH_STORM_PRESENCE (unset: the server's default, presence on for users;
0 or 1 sends the `presence` flag), BENCH_JSON (write the raw results to this file), BENCH_KEEP
(keep the server logs). A reconnect whose upgrade is not answered within 30 s is abandoned and
retried (TCP retransmits until then, as for a browser); a subscribe refused `temporary` is sent
again on the same connection 2 s later (what the PWA, `static/js/live.js`, does).
Run: `make bench` or `python -m bench storm`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_fanout import (
    CLK_TCK,
    LOADGEN_CORE,
    REFERENCE,
    SERVER_CORE,
    TASKSET,
    VONIX,
    Config,
    Deployment,
    LoadGen,
    Stack,
    create_rooms,
    preflight,
    progress,
)
from bench.table import print_table, print_targets

TARGET_SECONDS = 15.0
OTHER_LOAD_NOTE = 0.15  # share of a core used by other processes worth a note


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _servers() -> list[str]:
    return [s.strip() for s in (os.environ.get("BENCH_SERVERS") or "reference,vonix").split(",") if s.strip()]


def _presence() -> bool | None:
    value = os.environ.get("BENCH_STORM_PRESENCE", "").strip().lower()
    return None if value == "" else value in ("1", "true", "yes", "on")


@dataclass
class StormConfig:
    connections: int = field(default_factory=lambda: int(_env("BENCH_STORM_CONNECTIONS", 10000)))
    rooms: int = field(default_factory=lambda: int(_env("BENCH_STORM_ROOMS", 100)))
    users: int = field(default_factory=lambda: int(_env("BENCH_STORM_USERS", 100)))
    per_client: int = 3
    rate: float = field(default_factory=lambda: _env("BENCH_STORM_RATE", 200))
    publishers: int = field(default_factory=lambda: int(_env("BENCH_STORM_PUBLISHERS", 4)))
    jitter_ms: float = field(default_factory=lambda: _env("BENCH_STORM_JITTER_MS", 250))
    before: float = field(default_factory=lambda: _env("BENCH_STORM_BEFORE", 2))
    after: float = field(default_factory=lambda: _env("BENCH_STORM_AFTER", 2))
    drain_seconds: float = field(default_factory=lambda: _env("BENCH_STORM_DRAIN_SECONDS", 10))
    batch: bool = field(default_factory=lambda: os.environ.get("BENCH_STORM_BATCH", "1") not in ("0", "false"))
    presence: bool | None = field(default_factory=_presence)
    # on SIGTERM the reference closes its 10,000 connections with closing handshakes that starve
    # replica B of the shared core for ~30 s; KILL drops them at once: the herd B must absorb
    reference_signal: str = field(default_factory=lambda: (os.environ.get("BENCH_STORM_REFERENCE_SIGNAL")
                                                           or "KILL").upper().removeprefix("SIG"))
    servers: list[str] = field(default_factory=_servers)
    concurrency: int = 100
    max_wait: float = field(default_factory=lambda: _env("BENCH_STORM_MAX_WAIT", 30))  # then count who is not back

    @property
    def room_names(self) -> list[str]:
        return [f"room:storm-{i:03d}" for i in range(self.rooms)]


@dataclass
class StormResult:
    server: str
    connect: dict[str, Any]
    run: dict[str, Any]
    note: str = ""

    @property
    def tracked(self) -> bool:
        return bool(self.run["tracked"])

    def cpu(self, name: str) -> float:
        return float(self.run["cpu_ticks"].get(name, 0)) / CLK_TCK

    @property
    def window(self) -> float:
        return float(self.run["storm_seconds"])

    @property
    def other_load(self) -> float:
        """Share of a core used by other processes during the storm (the machine may be shared), worst
        of the server core (both replicas, Redis, PostgreSQL are ours) and the load generator's core."""
        ticks = self.run["cpu_ticks"]
        ours = {SERVER_CORE: sum(ticks.get(k, 0) for k in ("a", "b", "redis", "db")),
                LOADGEN_CORE: ticks.get("loadgen", 0)}
        worst = 0.0
        for core, own in ours.items():
            total = ticks.get(f"core{core}_total", 0)
            if total:
                busy = ticks.get(f"core{core}_busy", 0) - ticks.get(f"core{core}_softirq", 0)
                worst = max(worst, (busy - own) / total)
        return worst


def storm(stack: Stack, lg: LoadGen, cfg: StormConfig, kind: str) -> StormResult:
    """One storm against `kind`: connect to A, publish on B, stop A, measure the way back."""
    progress(f"storm: {kind}: deploying 2 replicas")
    deployment: Deployment = stack.deploy(kind, 2, scaled=True, users=cfg.users)
    try:
        a, b = deployment.servers
        url_a, url_b = deployment.urls
        rooms = cfg.room_names
        vonix = kind == VONIX
        if vonix:
            create_rooms(deployment.base_url, deployment.tokens[0], [r.removeprefix("room:") for r in rooms])
        progress(f"storm: {kind}: connecting {cfg.connections:,} clients to replica A, "
                 f"{cfg.per_client} rooms each")
        connected = lg.call(cmd="storm_connect", url=url_a, target=url_b, tokens=deployment.tokens, rooms=rooms,
                            per_client=cfg.per_client, n=cfg.connections, concurrency=cfg.concurrency,
                            batch=cfg.batch and vonix, presence=cfg.presence if vonix else None, track=vonix)
        if connected["failed"]:
            raise RuntimeError(f"{connected['failed']} of {cfg.connections} clients failed to connect: "
                               f"{connected['errors']}")
        signal = "TERM" if vonix else cfg.reference_signal
        progress(f"storm: {kind}: {connected['connected']:,} connected in {connected['seconds']:.1f} s; publishing "
                 f"on B, SIG{signal} to A in {cfg.before:g} s")
        pids: dict[str, list[int]] = {"b": [b.pid], "redis": [stack.redis_pid]}
        parents = {}
        if vonix and stack.postgres_pids():
            postmaster = stack.postgres_pids()[0]
            pids["db"], parents["db"] = [postmaster], postmaster  # and its backends, counted by the load generator
        run = lg.call(timeout=cfg.max_wait + cfg.before + cfg.after + 60, cmd="storm", target=url_b,
                      publish_urls=[url_b], publish_token=deployment.publisher_token, publishers=cfg.publishers,
                      rate=cfg.rate, rooms=rooms, before=cfg.before, after=cfg.after, kill_pid=a.pid,
                      kill_signal=f"SIG{signal}",
                      jitter_ms=cfg.jitter_ms, max_wait=cfg.max_wait, quiesce=10, pids=pids,
                      parents=parents)
        progress(f"storm: {kind}: last client back {run['last_back_seconds']} s after the signal "
                 f"({run['not_back']} not back within {cfg.max_wait:g} s), lost {run['lost']}, "
                 f"duplicates {run['duplicates']}")
        if run.get("open_ms", {}).get("n"):
            progress(f"storm: {kind}: reconnect -> upgrade answered p50/p99 {run['open_ms']['p50']:,.0f}/"
                     f"{run['open_ms']['p99']:,.0f} ms; upgrade -> resubscribed p50/p99 "
                     f"{run['subscribed_ms']['p50']:,.0f}/{run['subscribed_ms']['p99']:,.0f} ms; back per second "
                     f"{run['back_per_second']}")
        lg.call(cmd="close")
        with contextlib.suppress(subprocess.TimeoutExpired):  # A drains, then exits by itself
            run["a_exit"] = a.process.wait(max(5.0, cfg.drain_seconds))
    finally:
        deployment.stop()
    if vonix:
        note = (f"scaled (PostgreSQL + Redis); drain over {cfg.drain_seconds * 0.5:g} s; "
                + ("batch subscribe" if cfg.batch else "3 single subscribes") + " with since")
    elif cfg.reference_signal == "TERM":
        note = ("no drain: SIGTERM closes every connection at once (1001); 3 single subscribes; no "
                "history/since: loss not measurable")
    else:
        note = ("no drain: SIGKILL, every connection dropped at once (1006); 3 single subscribes; no "
                "history/since: loss not measurable")
    return StormResult(kind, connected, run, note)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def report(cfg: StormConfig, results: list[StormResult]) -> list[str]:
    warnings: list[str] = []
    targets: list[tuple[str, str, str]] = []
    rows = []
    for r in results:
        run = r.run
        window = r.window or 1.0
        back = run["all_back_seconds"]
        rows.append([
            r.server, f"{run['clients']:,} x {run['channels_per_client']}", f"{r.connect['seconds']:.1f} s",
            f"> {cfg.max_wait:g}" if back is None else f"{back:.2f}",
            "-" if run["last_close_seconds"] is None
            else f"{run['last_close_seconds']:.2f}",
            _ms(run["reconnect_ms"]["p50"]), _ms(run["reconnect_ms"]["p99"]), _ms(run["reconnect_ms"]["max"]),
            run["not_back"], _count(run["lost"]), _count(run["duplicates"]),
            f"{run['not_recovered']:,} ({run['not_recovered_messages']:,} msgs)" if r.tracked else "-",
            f"{run['published']:,} ({run['published_during_storm']:,})",
            f"{r.cpu('b'):.2f} s ({100 * r.cpu('b') / window:.0f}%)", f"{r.cpu('a'):.2f} s",
            f"{r.cpu('redis') + r.cpu('db'):.2f} s",
            f"{r.cpu('loadgen'):.2f} s ({100 * r.cpu('loadgen') / window:.0f}%)",
            int(run["cpu_ticks"].get("listen_overflows", 0)), f"{r.other_load:.0%}", r.note])
        if r.other_load > OTHER_LOAD_NOTE:
            warnings.append(f"note: storm, {r.server}: other processes used {r.other_load:.0%} of a core during the "
                            "storm (shared machine): times are longer than on a quiet machine")
        if r.cpu("loadgen") > r.cpu("b") + 2 / CLK_TCK:
            warnings.append(f"WARNING: storm, {r.server}: the load generator used more CPU ({r.cpu('loadgen'):.2f} s) "
                            f"than replica B ({r.cpu('b'):.2f} s); the result may be limited by the client")
        if run["failed"] or run["not_back"]:
            late = run["not_back"] - run["never_back"]
            last = f", the last {run['last_back_seconds']:.1f} s after the signal" if late else ""
            warnings.append(f"WARNING: storm, {r.server}: {run['not_back']} clients not back within "
                            f"{cfg.max_wait:g} s ({late} came back later{last}; {run['never_back']} never, "
                            f"{run['failed']} of them gave up after 10 attempts)")
        if run["retries"]:
            warnings.append(f"note: storm, {r.server}: {run['retries']:,} reconnect attempts failed and were retried: "
                            f"{run['retry_reasons']}")
        if run["closed_early"] or run["closed_again"]:
            warnings.append(f"WARNING: storm, {r.server}: {run['closed_early']} connections closed before the "
                            f"drain, {run['closed_again']} closed again after reconnecting")
        if run["subscribe_errors"]:
            warnings.append(f"WARNING: storm, {r.server}: subscribe errors {run['subscribe_errors']}")
        if run["refused"] or run["publisher_closed"] or run["acked"] < run["published"]:
            warnings.append(f"WARNING: storm, {r.server}: {run['refused']} publishes refused, "
                            f"{run['published'] - run['acked']} not acknowledged, "
                            f"{run['publisher_closed']} publishers closed")
        if r.tracked and (run["lost"] or run["duplicates"] or run["early"] or run["foreign"]):
            warnings.append(f"WARNING: storm, {r.server}: lost {run['lost']} ({run['lost_clients']} clients), "
                            f"duplicates {run['duplicates']}, out of order {run['late']}, early {run['early']}, "
                            f"foreign {run['foreign']}; gaps {run['gap_samples']}; duplicates {run['dup_samples']}")
        if r.server == VONIX:
            ok = (back is not None and back <= TARGET_SECONDS and run["lost"] == 0
                  and run["duplicates"] == 0 and run["not_recovered"] == 0)
            targets.append(("reconnect storm: all back within 15 s, zero loss, zero duplicates",
                            f"{f'> {cfg.max_wait:g}' if back is None else f'{back:.2f}'} s, "
                            f"{run['lost']:,} lost, "
                            f"{run['duplicates']:,} duplicates, {run['not_back']} not back, "
                            f"{run['not_recovered']} not recovered",
                            "met" if ok else "MISSED"))
    presence = {None: "server default", True: "on", False: "off"}[cfg.presence]
    print_table(f"Reconnect storm: {cfg.connections:,} clients on replica A, {cfg.per_client} of {cfg.rooms} rooms "
                f"each, {cfg.rate:g} messages/s published on B throughout; A stopped (Vonix: SIGTERM, drain), every "
                f"client reconnects to B (jitter <= {cfg.jitter_ms:g} ms) and resubscribes (Vonix: with since; "
                f"presence: {presence})",
                ["server", "clients x rooms", "connect", "all back s", "last close s", "p50 ms", "p99 ms",
                 "max ms", "not back", "lost", "duplicates", "not recovered", "published (in storm)", "B cpu",
                 "A cpu", "redis+db cpu", "loadgen cpu", "listen overflows", "other load", "note"], rows)
    print("\n".join([
        "  all back / last close: seconds from the signal to A to the last resubscribe reply / to the last close",
        "  p50/p99/max: per client, close seen -> resubscribe reply (includes the reconnect jitter)",
        "  not back: clients not resubscribed within BENCH_STORM_MAX_WAIT s of the signal (all back: \"> N\")",
        "  lost: per client and room, offsets not received (live or in `missed`) from its first subscribe to the",
        "        room's last acknowledged publish; not recovered: resubscribes answered `recovered: false` (and the",
        "        messages they announced missing, counted in lost)",
        "  cpu (A: the draining replica) and listen overflows (connections the kernel dropped because a listen queue",
        "        was full, machine-wide): from the signal to the last client back; other load: share of a core used by",
        "        other processes meanwhile",
    ]) + "\n")
    print_targets("Targets (issue 15)", targets, warnings)
    return warnings


def main() -> int:
    cfg = StormConfig()
    preflight()
    os.environ["DRAIN_SECONDS"] = f"{cfg.drain_seconds:g}"  # the Vonix servers' environment derives from ours
    started = time.monotonic()
    base = Config()
    base.users = cfg.users
    stack = Stack(base)
    lg = LoadGen()
    results: list[StormResult] = []
    try:
        for kind in (REFERENCE, VONIX):
            if kind in cfg.servers:
                results.append(storm(stack, lg, cfg, kind))
    finally:
        lg.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept server logs in {stack.dir}", file=sys.stderr)
            stack.dir = Path(tempfile.mkdtemp())
        with contextlib.suppress(Exception):
            stack.cleanup()
    print(f"bench_storm: {os.cpu_count()} cores, servers on core {SERVER_CORE}"
          f"{'' if TASKSET else ' (NOT pinned: no taskset)'}, load generator on core {LOADGEN_CORE}; "
          f"{time.monotonic() - started:.0f} s\n", flush=True)
    report(cfg, results)
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps({
            "config": asdict(cfg),
            "storm": [{"server": r.server, "connect": r.connect, "run": r.run, "note": r.note} for r in results]},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
