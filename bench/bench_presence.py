"""Presence at scale (issue 15, item 5): 2,000 members joining one room within a few seconds.

Each member is a distinct user (minted straight into the database, see bench/members.py) with one
connection, token on the upgrade, subscribing to `room:general` with presence on, as the PWA does.
Two runs on the same scaled deployment shape (PostgreSQL + Redis, one replica pinned to core 0):
- `WS_PRESENCE_INTERVAL_MS=0`: every join is sent at once as its own push to every subscriber,
  which is what one `join` push per join cost before diffs existed (O(n^2) pushes);
- the default 200 ms: joins coalesced into `presence_diff` pushes.
Reported: presence pushes queued to clients (the server's delivered counter; nothing else is
published meanwhile), diffs published, server and Redis+PostgreSQL CPU from the first connect
until the last push is out. Knobs: BENCH_PRESENCE_MEMBERS (2000).
"""

from __future__ import annotations

import os
import re
import sys
import time

import httpx

from bench import members
from bench.bench_fanout import (
    CLK_TCK,
    LOADGEN_CORE,
    SERVER_CORE,
    TASKSET,
    Config,
    LoadGen,
    Stack,
    preflight,
    progress,
    start_vonix,
    vonix_env,
)
from bench.table import print_table, print_targets

SETTLE = 1.0  # seconds after the last connect: the last diffs go out


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _delta(before: str, after: str, name: str) -> float:
    return _metric(after, name) - _metric(before, name)


def run(stack: Stack, lg: LoadGen, cfg: Config, count: int, interval_ms: int) -> dict[str, float]:
    database, _bot = stack.database(True)
    stack.flush_redis()
    env = {**vonix_env(database, stack.redis.url), "WS_PRESENCE_INTERVAL_MS": str(interval_ms)}
    progress(f"presence, interval {interval_ms} ms: minting {count:,} members")
    tokens = members.mint_members(env, "member", count)
    server = start_vonix(env, stack.dir)
    try:
        url = f"http://127.0.0.1:{server.port}"
        pids = {"server": [server.pid], "redis": [stack.redis_pid], "db": stack.postgres_pids()}
        before = httpx.get(f"{url}/metrics", timeout=10).text
        cpu0 = lg.call(cmd="cpu", pids=pids)["cpu_ticks"]
        progress(f"presence, interval {interval_ms} ms: {count:,} members join room:general")
        done = lg.call(cmd="connect", urls=[f"ws://127.0.0.1:{server.port}/ws"], tokens=tokens,
                       channels=["room:general"], group=count, n=count, concurrency=cfg.concurrency,
                       sample_every=cfg.sample_every, seq_key="offset")
        time.sleep(SETTLE + interval_ms / 1000)
        cpu1 = lg.call(cmd="cpu", pids=pids)["cpu_ticks"]
        after = httpx.get(f"{url}/metrics", timeout=10).text
        lg.call(cmd="close")
    finally:
        server.stop()
    if done["failed"]:
        raise RuntimeError(f"{done['failed']} members failed to connect: {done['errors']}")
    delta = {k: (cpu1.get(k, 0) - cpu0.get(k, 0)) / CLK_TCK for k in ("server", "redis", "db", "loadgen")}
    return {
        "interval_ms": interval_ms, "members": count, "connect_seconds": float(done["seconds"]),
        "pushes": _delta(before, after, "vonix_ws_messages_delivered_total"),
        "diffs": _delta(before, after, "vonix_ws_presence_diffs_total"),
        "server_cpu": delta["server"], "backend_cpu": delta["redis"] + delta["db"], "loadgen_cpu": delta["loadgen"],
    }


def main() -> int:
    cfg = Config()
    count = int(os.environ.get("BENCH_PRESENCE_MEMBERS") or 2000)
    preflight()
    stack = Stack(cfg)
    lg = LoadGen()
    try:
        results = [run(stack, lg, cfg, count, 0), run(stack, lg, cfg, count, 200)]
    finally:
        lg.close()
        stack.cleanup()
    print(f"bench_presence: servers on core {SERVER_CORE}{'' if TASKSET else ' (NOT pinned)'}, "
          f"load generator on core {LOADGEN_CORE}\n", flush=True)
    before, after = results
    def ratio(value: float, reference: float) -> str:
        return f"{value / reference:.3f}x" if reference else "-"

    def label(interval_ms: float) -> str:
        return f"{interval_ms:.0f} ms " + ("(default)" if interval_ms else "(one push per join, as before)")

    rows = [[label(r["interval_ms"]),
             f"{r['members']:,.0f}", f"{r['connect_seconds']:.1f}", f"{r['pushes']:,.0f}",
             ratio(r["pushes"], before["pushes"]), f"{r['diffs']:,.0f}", f"{r['server_cpu']:.2f}",
             ratio(r["server_cpu"], before["server_cpu"]), f"{r['backend_cpu']:.2f}", f"{r['loadgen_cpu']:.2f}"]
            for r in results]
    print_table(f"Presence: {count:,} members join one room (each its own user and connection, presence on)",
                ["presence interval", "members", "connect s", "presence pushes", "vs per-join", "diffs",
                 "server cpu s", "vs per-join", "redis+db cpu s", "loadgen cpu s"], rows)
    fewer = after["pushes"] <= 0.05 * before["pushes"]
    cheaper = after["server_cpu"] < before["server_cpu"]
    print_targets("Targets (issue 15, presence)", [
        [f"{count:,} joins: presence pushes <= 5% of one push per join",
         f"{after['pushes']:,.0f} vs {before['pushes']:,.0f}", "met" if fewer else "MISSED"],
        [f"{count:,} joins: less server CPU than one push per join", f"{after['server_cpu']:.2f} vs "
         f"{before['server_cpu']:.2f} s", "met" if cheaper else "MISSED"]], [])
    return 0


if __name__ == "__main__":
    sys.exit(main())
