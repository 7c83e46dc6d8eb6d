"""Chaos soak (issue 19): `make soak`, or `python -m bench.soak [--duration S] [--clients N] ...`.

Three `vonix serve` replicas behind a small proxy (bench/soak/proxy.py), their own PostgreSQL and
Redis Cluster (3 masters + 3 replicas); SOAK_CLIENTS (2,000) members, each on its own websocket,
in rooms of SOAK_ROOM_SIZE (20) and in one DM each, publish SOAK_RATE (100) messages/s in total
(SOAK_DM_SHARE, 20%, in DMs) for SOAK_DURATION (600) seconds, while the schedule
(bench/soak/schedule.py) kills a replica with SIGKILL, fails a Redis master over, restarts
PostgreSQL and drains a replica with SIGTERM. At the end the database and every client's log are
checked against each other (bench/soak/report.py) and a one-screen report is printed; the exit
status is 1 when any check failed. docs/soak.md says what is asserted and why the bounds are what
they are.

Knobs (environment, or the flag of the same name): SOAK_DURATION, SOAK_CLIENTS, SOAK_RATE, SOAK_DIR
(the run directory: client logs, replica logs, report.txt, summary.json; default a new directory
under /tmp), SOAK_ROOM_SIZE, SOAK_DM_SHARE, SOAK_PROCS (client processes, 2), SOAK_RECOVERY_BOUND
(30 s), SOAK_RSS_GROWTH (0.10), SOAK_FD_SLACK (5), SOAK_DRAIN_SECONDS (min(10, D / 6)),
SOAK_GIVE_UP (120 s: a publish not acknowledged by then is reported as never acknowledged),
SOAK_TASK_SLACK (20).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench.soak import report
from bench.soak.schedule import Event, Plan, run_event
from bench.soak.stack import ROOT, Node, Sample, Stack

CLK_TCK = os.sysconf("SC_CLK_TCK")
_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"  .. {time.monotonic() - _STARTED:6.1f} s  {message}", file=sys.stderr, flush=True)


@dataclass
class Config:
    duration: float
    clients: int
    rate: float
    room_size: int
    dm_share: float
    procs: int
    run_dir: Path
    recovery_bound: float
    rss_growth: float
    fd_slack: int
    drain_seconds: float
    give_up: float
    task_slack: int = 20
    backoff_cap: float = 5.0
    reply_timeout: float = 10.0
    settle_timeout: float = 30.0
    connect_timeout: float = 180.0

    @property
    def rooms(self) -> int:
        return max(1, self.clients // self.room_size)


def parse_config(argv: list[str]) -> Config:
    def env(name: str, default: str) -> str:
        return os.environ.get(name) or default

    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=float(env("SOAK_DURATION", "600")))
    parser.add_argument("--clients", type=int, default=int(env("SOAK_CLIENTS", "2000")))
    parser.add_argument("--rate", type=float, default=float(env("SOAK_RATE", "100")))
    parser.add_argument("--room-size", type=int, default=int(env("SOAK_ROOM_SIZE", "20")))
    parser.add_argument("--dm-share", type=float, default=float(env("SOAK_DM_SHARE", "0.2")))
    parser.add_argument("--procs", type=int, default=int(env("SOAK_PROCS", "2")))
    parser.add_argument("--dir", default=env("SOAK_DIR", ""))
    parser.add_argument("--recovery-bound", type=float, default=float(env("SOAK_RECOVERY_BOUND", "30")))
    parser.add_argument("--rss-growth", type=float, default=float(env("SOAK_RSS_GROWTH", "0.10")))
    parser.add_argument("--fd-slack", type=int, default=int(env("SOAK_FD_SLACK", "5")))
    parser.add_argument("--drain-seconds", type=float, default=float(env("SOAK_DRAIN_SECONDS", "0")))
    parser.add_argument("--give-up", type=float, default=float(env("SOAK_GIVE_UP", "120")))
    parser.add_argument("--task-slack", type=int, default=int(env("SOAK_TASK_SLACK", "20")))
    args = parser.parse_args(argv)
    run_dir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="vonix-soak-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    return Config(args.duration, args.clients, args.rate, args.room_size, args.dm_share, args.procs, run_dir,
                  args.recovery_bound, args.rss_growth, args.fd_slack,
                  args.drain_seconds or min(10.0, args.duration / 6), args.give_up, args.task_slack)


# --- client processes -------------------------------------------------------------------------

class Swarms:
    """The client processes (bench/soak/clients.py) and the events they print."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.events: list[list[dict[str, Any]]] = []
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, configs: list[Path], run_dir: Path) -> None:
        for i, path in enumerate(configs):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.soak.clients", str(path), cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=open(run_dir / f"clients-{i}.err", "ab"))
            self.procs.append(proc)
            self.events.append([])
            self._readers.append(asyncio.create_task(self._read(i, proc)))

    async def _read(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.events[index].append(json.loads(line))
                self._changed.set()
        self.events[index].append({"event": "exited", "t": time.time()})
        self._changed.set()

    def latest(self, name: str) -> list[dict[str, Any] | None]:
        return [next((e for e in reversed(events) if e["event"] == name), None) for events in self.events]

    async def wait(self, name: str, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.latest(name)
            if all(found):
                return [f for f in found if f is not None]
            exited = [i for i, events in enumerate(self.events)
                      if found[i] is None and any(e["event"] == "exited" for e in events)]
            failed = [e for events in self.events for e in events if e["event"] == "connect_failed"]
            if exited or failed:
                raise RuntimeError(f"client processes {exited} exited / failed {failed} while waiting for {name}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"client processes did not report {name} within {timeout:g} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    async def send(self, command: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{command}\n".encode())
            await proc.stdin.drain()

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{proc.pid}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 10)
        for reader in self._readers:
            reader.cancel()


def client_configs(cfg: Config, stack: Stack) -> list[Path]:
    """Member i: room i // room_size, DM with member i + N/2 (another room); process i % procs."""
    n = cfg.clients
    half = n // 2
    members = []
    for i in range(n):
        channels = [f"room:{stack.rooms[min(i // cfg.room_size, len(stack.rooms) - 1)]}"]
        partner = i + half if i < half else i - half
        if partner < n and partner != i and not (n % 2 and i == n - 1):
            low, high = sorted((stack.user_ids[i], stack.user_ids[partner]))
            channels.append(f"dm:{low}:{high}")
        members.append({"index": i, "user": f"soak{i:05d}", "token": stack.tokens[i], "channels": channels})
    paths = []
    for k in range(cfg.procs):
        path = cfg.run_dir / f"clients-{k}.json"
        path.write_text(json.dumps({
            "proc": k, "url": stack.url, "clients": members[k::cfg.procs], "rate": cfg.rate / cfg.procs,
            "dm_share": cfg.dm_share, "give_up": cfg.give_up, "reply_timeout": cfg.reply_timeout,
            "backoff_cap": cfg.backoff_cap, "settle_timeout": cfg.settle_timeout,
            "connect_timeout": cfg.connect_timeout, "seed": k, "log": str(cfg.run_dir / f"clients-{k}.jsonl")}))
        paths.append(path)
    return paths


# --- the run ----------------------------------------------------------------------------------

@dataclass
class Marks:
    """Per replica, the samples the checks compare: idle (before clients; for a restarted
    replica, right after its restart), warm (end of warm-up), end (end of publishing), after
    (clients gone)."""

    by_node: dict[str, dict[str, Sample]]
    restarts: dict[str, int]

    def put(self, node: Node, label: str) -> None:
        sample = node.sample()
        if sample is not None:
            self.by_node.setdefault(node.name, {})[label] = sample


async def sample_forever(stack: Stack) -> None:
    while True:
        await asyncio.to_thread(lambda: [node.sample() for node in stack.nodes])
        await asyncio.sleep(2.0)


async def run_schedule(cfg: Config, stack: Stack, t0: float, marks: Marks) -> list[Event]:
    plan = Plan(cfg.duration)
    events: list[Event] = []

    def on_restart(node: Node) -> None:
        marks.restarts[node.name] = marks.restarts.get(node.name, 0) + 1
        marks.put(node, "idle")

    async def warm() -> None:
        await asyncio.sleep(max(0.0, t0 + plan.warmup - time.time()))
        for node in stack.nodes:
            await asyncio.to_thread(marks.put, node, "warm")
        progress("warm-up over: baselines read")

    warming = asyncio.create_task(warm())
    for name, at in plan.events():
        await asyncio.sleep(max(0.0, t0 + at - time.time()))
        event = Event(name, at, started=time.time())
        progress(f"chaos: {name}")
        try:
            event.detail = await asyncio.to_thread(run_event, stack, name, cfg.duration, on_restart)
        except Exception as exc:  # the report says which event failed; the soak goes on
            event.error = f"{type(exc).__name__}: {exc}"[:160]
        event.ended = time.time()
        progress(f"chaos: {name} done in {event.ended - event.started:.1f} s {event.error or ''}")
        events.append(event)
    await warming
    return events


async def soak(cfg: Config) -> int:
    progress(f"run directory {cfg.run_dir}")
    stack = Stack(cfg.run_dir, cfg.clients, cfg.rooms, cfg.drain_seconds, progress)
    swarms = Swarms()
    sampler: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(stack.start)
        marks = Marks({}, {})
        for node in stack.nodes:
            marks.put(node, "idle")
        progress(f"connecting {cfg.clients:,} clients through the proxy ({cfg.procs} processes)")
        await swarms.start(client_configs(cfg, stack), cfg.run_dir)
        connected = await swarms.wait("connected", cfg.connect_timeout + 10)
        progress(f"connected in {max(e['seconds'] for e in connected):.1f} s; publishing {cfg.rate:g} msg/s "
                 f"for {cfg.duration:g} s")
        sampler = asyncio.create_task(sample_forever(stack))
        t0 = time.time()
        await swarms.send("start")
        events = await run_schedule(cfg, stack, t0, marks)
        # On a busy machine the events take longer than their slots: publishing goes on past D
        # then, so the last event is followed by a steady tail of at least a tenth of D too.
        await asyncio.sleep(max(0.0, t0 + cfg.duration - time.time(), events[-1].ended + 0.1 * cfg.duration
                                - time.time()))
        end = time.time()
        for node in stack.nodes:
            await asyncio.to_thread(marks.put, node, "end")
        progress("publishing stops; waiting for every pending publish")
        await swarms.send("stop")
        stopped = await swarms.wait("stopped", cfg.give_up + 60)
        last = await asyncio.to_thread(stack.last_offsets)
        settle = cfg.run_dir / "last_offsets.json"
        settle.write_text(json.dumps(last))
        await swarms.send(f"settle {settle}")
        settled = await swarms.wait("settled", cfg.settle_timeout + 30)
        client_cpu = swarms.cpu_seconds()
        await swarms.send("leave")
        await swarms.wait("done", 120)
        await swarms.close()
        sampler.cancel()
        await asyncio.to_thread(wait_clients_gone, stack)
        await asyncio.to_thread(mark_after, cfg, stack, marks)
        rows = await asyncio.to_thread(stack.stored)
        logs = [json.loads(line) for k in range(cfg.procs)
                for line in (cfg.run_dir / f"clients-{k}.jsonl").read_text().splitlines()]
        published = sum(e["published"] for e in stopped)
        analysis = report.analyse(logs, rows, last, {f"soak{i:05d}": uid for i, uid in enumerate(stack.user_ids)},
                                  published)
        hot: dict[str, Any] = {}
        if analysis.lost_channels:
            with contextlib.suppress(Exception):
                hot["state"] = await asyncio.to_thread(stack.hot_state, sorted(analysis.lost_channels))
        lines, checks = render(cfg, stack, analysis, events, marks, t0, end, client_cpu,
                               sum(e["behind"] for e in settled), hot)
    finally:
        if sampler is not None:
            sampler.cancel()
        await swarms.close()
        await asyncio.to_thread(stack.stop)
    text = "\n".join(lines)
    print(text, flush=True)
    (cfg.run_dir / "report.txt").write_text(text + "\n")
    facts = summary(cfg, analysis, events, marks, checks, stack, t0)
    (cfg.run_dir / "summary.json").write_text(json.dumps(facts, indent=1, default=str))
    return 0 if all(c.ok for c in checks) else 1


def wait_clients_gone(stack: Stack, timeout: float = 20.0) -> None:
    """Until every live replica's websocket gauge says 0 (the fds left then are the replica's own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = [node.sample() for node in stack.nodes]
        if all(s is None or s.connections == 0 for s in samples):
            return
        time.sleep(0.5)


def mark_after(cfg: Config, stack: Stack, marks: Marks, timeout: float = 30.0) -> None:
    """The "after" samples, taken again (for up to `timeout`) while some replica still runs more
    tasks than idle + slack: what a departed client leaves behind ends on its own timers (presence
    grace, gap fills), so a task count still high after that is a leak."""
    deadline = time.monotonic() + timeout
    while True:
        for node in stack.nodes:
            marks.put(node, "after")
        if all(tasks_settled(cfg, m.get("idle"), m.get("after")) for m in marks.by_node.values()) \
                or time.monotonic() > deadline:
            return
        time.sleep(1.0)


def tasks_settled(cfg: Config, idle: Sample | None, after: Sample | None) -> bool:
    return idle is not None and after is not None and 0 <= after.tasks <= idle.tasks + cfg.task_slack \
        and idle.tasks >= 0


# --- report -----------------------------------------------------------------------------------

DB_POOL_MAX = 10  # the server's default DB_POOL_MAX (server/settings.py)


def own_fds(sample: Sample) -> int:
    """fds that are neither PostgreSQL nor Redis pool sockets: files, listeners, client sockets."""
    return sample.fds - sample.pg_fds - sample.redis_fds


def fds_settled(cfg: Config, idle: Sample | None, after: Sample | None) -> bool:
    """After the clients left: no websocket left open, the replica's own fds back within slack of
    idle, PostgreSQL sockets within the pool's cap (pools may keep what they opened under load:
    bounded by configuration, not a leak; Redis pools likewise, shown apart)."""
    if idle is None or after is None:
        return False
    return (after.connections == 0 and own_fds(after) <= own_fds(idle) + cfg.fd_slack
            and after.pg_fds <= DB_POOL_MAX + 2)


def rss_growth(idle: Sample | None, warm: Sample | None, fin: Sample | None) -> tuple[float | None, float | None]:
    """RSS growth from the end of the warm-up to the end: raw, and net of the connections the
    replica gained meanwhile (a killed replica's clients move to the others for good), each priced
    at what a connection cost this replica while the clients connected (idle -> warm, same run)."""
    if idle is None or warm is None or fin is None or not warm.rss_kib:
        return None, None
    raw = (fin.rss_kib - warm.rss_kib) / warm.rss_kib
    if warm.connections <= 0 or fin.connections < 0:
        return raw, raw
    per_connection = max(0.0, (warm.rss_kib - idle.rss_kib) / warm.connections)
    extra = max(0, fin.connections - warm.connections) * per_connection
    return raw, (fin.rss_kib - extra - warm.rss_kib) / warm.rss_kib


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def render(cfg: Config, stack: Stack, a: report.Analysis, events: list[Event], marks: Marks, t0: float,
           end: float, client_cpu: float, behind: int,
           stack_hot: dict[str, Any]) -> tuple[list[str], list[report.Check]]:
    dms = cfg.clients // 2
    lines = [
        f"Vonix chaos soak: {cfg.clients:,} clients ({cfg.rooms} rooms x {cfg.room_size}, {dms:,} DMs), "
        f"{cfg.rate:g} msg/s ({cfg.dm_share:.0%} DMs), {cfg.duration:g} s; 3 replicas behind a least-conn proxy, "
        "PostgreSQL, Redis Cluster 3+3",
        f"run dir {cfg.run_dir} (client logs, replica logs, summary.json); drain {cfg.drain_seconds:g} s, "
        f"recovery bound {cfg.recovery_bound:g} s",
        "timeline (s after publishing began)",
        f"  {Plan(cfg.duration).warmup:6.1f}  warm-up over            baselines read (RSS, fds)",
        *report.event_effects(a, events, end + cfg.settle_timeout, t0),
    ]
    back = [o[2] - o[0] for o in a.outages if o[2] is not None]
    never = sum(1 for o in a.outages if o[2] is None)
    lat = a.latencies
    lines += [
        f"publishes: {a.published:,} sent, {a.acked:,} acknowledged, {a.unacked:,} never acknowledged, "
        f"{a.refused:,} refused for good; latency p50 {report.percentile(lat, .5) * 1000:.0f} ms, "
        f"p99 {report.percentile(lat, .99) * 1000:.0f} ms, max {max(lat, default=0):.1f} s",
        f"stored: {a.stored_soak:,} soak messages (+{a.other_rows} others); offset gaps {a.offset_gaps}, nonce "
        f"duplicates {a.nonce_dups}, text duplicates {a.text_dups}, acks not matching their row "
        f"{a.ack_missing + a.ack_mismatch}, stored but unacknowledged {a.stored_not_acked}",
        f"deliveries: expected {a.expected:,}, seen {a.seen:,} ({a.via_missed:,} via missed), lost {a.lost:,}, "
        f"duplicates {a.duplicates:,}, out of order {a.out_of_order:,}, foreign {a.foreign:,}, clients behind "
        f"at the end {behind}",
        f"reconnects: {len(a.outages):,}, back p50 {report.percentile(back, .5):.2f} s, p99 "
        f"{report.percentile(back, .99):.2f} s, max {max(back, default=0):.2f} s; never back {never}, "
        f"recovered:false {a.not_recovered}; subscribe errors {report._codes(a.sub_errors)}",
        "replica  RSS MiB idle/warm/end growth(adj) fds idle/warm/end/after (own+pg+redis after)  threads  "
        "tasks idle/warm/after  ws conns warm/end/after  cpu s",
    ]
    if a.lost_channels:
        hot = stack_hot.get("state", {})
        parked = sorted(ch for ch, (_, pending) in hot.items() if pending)
        lines.insert(-1, f"  lost on {len(a.lost_channels)} channels; Redis hot history there (offset, pending): "
                         f"{dict(list(hot.items())[:3])}; {len(parked)} with messages parked in pending")
    checks: list[report.Check] = []
    rss_ok = True
    fds_ok = True
    tasks_ok = True
    for node in stack.nodes:
        m = marks.by_node.get(node.name, {})
        idle, warm, fin, after = (m.get(k) for k in ("idle", "warm", "end", "after"))
        restarts = marks.restarts.get(node.name, 0)
        growth, adjusted = rss_growth(idle, warm, fin)
        judged = restarts == 0
        if judged and (adjusted is None or adjusted >= cfg.rss_growth):
            rss_ok = False
        if not fds_settled(cfg, idle, after):
            fds_ok = False
        if not tasks_settled(cfg, idle, after):
            tasks_ok = False

        def v(s: Sample | None, attr: str) -> str:
            return "-" if s is None else str(getattr(s, attr))

        split = "-" if after is None else f"{own_fds(after)}+{after.pg_fds}+{after.redis_fds}"
        lines.append(
            f"{node.name}{'*' if restarts else ' '}      "
            f"{'/'.join('-' if s is None else _mib(s.rss_kib) for s in (idle, warm, fin)):<12} "
            f"{'-' if growth is None else f'{growth:+.0%}':>4}{'' if adjusted is None else f'({adjusted:+.0%})':<7}"
            f"{'/'.join(v(s, 'fds') for s in (idle, warm, fin, after)) + f' ({split})':<36} "
            f"{'/'.join(v(s, 'threads') for s in (idle, after)):<8} "
            f"{'/'.join(v(s, 'tasks') for s in (idle, warm, after)):<21} "
            f"{'/'.join(v(s, 'connections') for s in (warm, fin, after)):<23} "
            f"{'-' if fin is None else f'{fin.cpu_s:.0f}'}")
    lines.append(f"  * restarted (idle = right after its last start; RSS not judged). Clients: {client_cpu:.0f} CPU s")
    pg = next((e for e in events if e.name.startswith("PostgreSQL")), None)
    pg_refused, pg_acked, pg_unanswered = report.pg_refusals(a, pg)
    kill = next((e for e in events if e.name.startswith("kill")), None)
    drain = next((e for e in events if e.name.startswith("SIGTERM")), None)

    def in_window(ev: Event | None, code: int | None = None) -> int:
        """Reconnects that began during the event (or within 10 s of its end)."""
        return sum(1 for o in a.outages if ev is not None and ev.started <= o[0] < ev.ended + 10
                   and (code is None or o[1] == code))

    checks += [
        report.Check(all(e.error is None for e in events) and len(events) == 4 and in_window(kill) > 0
                     and in_window(drain, 1012) > 0,
                     f"chaos: 4 events ran; kill -9 dropped {in_window(kill)} clients, drain closed "
                     f"{in_window(drain, 1012)} with 1012"),
        report.Check(a.unacked == 0 and a.refused == 0 and a.acked == a.published,
                     f"every publish acknowledged ({a.acked:,} of {a.published:,}; refused for good: "
                     f"{report._codes(a.refused_codes) if a.refused else 0})"),
        report.Check(a.ack_missing == a.ack_mismatch == a.nonce_dups == a.text_dups == a.offset_gaps
                     == a.stored_not_acked == 0 and a.stored_soak == a.acked,
                     f"every acknowledged message stored exactly once ({a.stored_soak:,} rows)"),
        report.Check(a.lost == a.duplicates == a.out_of_order == a.foreign == a.never_subscribed == 0
                     and a.expected > 0 and behind == 0,
                     f"every member got every message of its channels once, in order ({a.seen:,} deliveries)"),
        report.Check(never == 0 and a.not_recovered == 0 and max(back, default=0) <= cfg.recovery_bound,
                     f"every reconnect back with recovered:true within {cfg.recovery_bound:g} s "
                     f"(max {max(back, default=0):.1f} s, {never} never)"),
        report.Check(pg is not None and pg.error is None and pg_refused > 0 and pg_acked == pg_refused,
                     f"PostgreSQL outage: {pg_refused} publishes refused with a temporary code, {pg_acked} of them "
                     f"acknowledged later with the same nonce ({pg_unanswered} waited unanswered)"),
        report.Check(rss_ok, f"RSS of replicas that ran throughout grew < {cfg.rss_growth:.0%} after warm-up, net of "
                             "connections gained (adj)"),
        report.Check(fds_ok, f"no fd or connection leak: after clients left, own fds <= idle + {cfg.fd_slack}, "
                             f"pg sockets <= {DB_POOL_MAX + 2}, ws connections 0"),
        report.Check(tasks_ok, f"no task leak: after clients left, each replica's asyncio tasks <= idle + "
                               f"{cfg.task_slack}"),
    ]
    lines += [f"{'PASS' if c.ok else 'FAIL'}  {c.text}" for c in checks]
    lines.append(f"RESULT: {'PASS' if all(c.ok for c in checks) else 'FAIL'}")
    return lines, checks


def summary(cfg: Config, a: report.Analysis, events: list[Event], marks: Marks, checks: list[report.Check],
            stack: Stack, t0: float) -> dict[str, Any]:
    # not asdict(): it rebuilds a Counter from (key, count) pairs, counting the pairs
    plain = {f.name: getattr(a, f.name) for f in fields(a)
             if f.name not in ("outages", "latencies", "errors", "acked_nonces")}
    plain = {k: sorted(v) if isinstance(v, set) else dict(v) if isinstance(v, Counter) else v
             for k, v in plain.items()}
    return {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "analysis": plain, "events": [asdict(e) for e in events],
            "marks": {n: {k: asdict(s) for k, s in m.items()} for n, m in marks.by_node.items()},
            "restarts": marks.restarts, "checks": [asdict(c) for c in checks], "t0": t0,
            # every 2 s: [s after t0, RSS KiB, fds, pg sockets, redis sockets, ws connections]
            "series": {node.name: [[round(x.t - t0, 1), x.rss_kib, x.fds, x.pg_fds, x.redis_fds, x.connections]
                                   for x in node.samples] for node in stack.nodes}}


def main(argv: list[str]) -> int:
    cfg = parse_config(argv)
    return asyncio.run(soak(cfg))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
