"""The Redis Cluster benchmark still runs end to end (issue 19): tiny sizes, every row and table.

It starts what `make bench` starts (PostgreSQL, one redis-server, a 3 + 3 Redis Cluster, two Vonix
replicas per backend, the Node load generators); only the sizes are small. The figures are not
judged, only that each row has them, that nothing was lost, and that the cluster's fan-out channels
landed on every master (each holds a shard channel and processed commands), which is what the
per-shard CPU columns rely on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[\d,]+(?:\.\d+)?"
LATENCY = rf"(?:{NUMBER}|-)"  # "-" when no sampled client got a message in a tiny window
SHARES = r"\d+% / \d+% / \d+%"


@pytest.mark.timeout(150)
def test_bench_cluster_prints_both_backends_and_cpu_per_master(tmp_path: Path) -> None:
    raw = tmp_path / "results.json"
    env = {**os.environ, "BENCH_SUBSCRIBERS": "30", "BENCH_SECONDS": "0.5", "BENCH_ROOM_CLIENTS": "60",
           "BENCH_USERS": "1", "BENCH_RETRIES": "0", "BENCH_JSON": str(raw)}
    result = subprocess.run([sys.executable, "-m", "bench.bench_cluster"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=140, check=False)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"

    for title in ("Redis Cluster vs single Redis:", "Redis CPU per master", "Targets (issue 19, Redis Cluster)"):
        assert title in out, out
    scenarios = ("fan-out: 30 subs on 3 bot: channels", "rooms: 60 clients, rooms of 10, 1 msg/s each")
    for scenario in scenarios:
        for backend, path in (("single Redis", "1 redis-server, PUBLISH"),
                              ("cluster", "3 masters + 3 replicas, SPUBLISH")):
            row = re.search(rf"^{re.escape(scenario)}\s+{backend}\s+{re.escape(path)}\s+({NUMBER})\s+{NUMBER}x\s+"
                            rf"{NUMBER}\s+{LATENCY}\s+{LATENCY}\s+0 of ({NUMBER})\s", out, re.MULTILINE)
            assert row, f"no row with numbers and `0 of N` lost for {scenario} / {backend}:\n{out}"
            assert float(row.group(1).replace(",", "")) > 0 and row.group(2) != "0", out
        shards = rf"^{re.escape(scenario)}\s+cluster\s+\d+%\s+{SHARES}\s+(?:{SHARES}|- / - / -)\s+\d+%\s+" \
                 rf"{NUMBER} / {NUMBER} / {NUMBER}\s+{SHARES}\s+\d+ / \d+ / \d+"
        assert re.search(shards, out, re.MULTILINE), f"no per-master row for {scenario}:\n{out}"
        assert re.search(rf"^{re.escape(scenario)}\s+single Redis\s+\d+%\s+\d+%\s+(?:100%|-)\s", out,
                         re.MULTILINE), out  # "-": no CPU tick in a tiny window
        assert f"{scenario}: no master takes more than 60% of the Redis CPU (3 masters)" in out, out
        assert f"{scenario}: cluster deliveries/s >= 0.7x single Redis, zero loss" in out, out

    results = json.loads(raw.read_text())["results"]
    assert len(results) == 4
    for r in results:
        run = r["run"]
        assert run["lost"] == 0 and run.get("order_errors", 0) == 0 and run["closed"] == 0, r
    fanout = next(r for r in results if r["backend"] == "cluster" and r["scenario"].startswith("fan-out"))
    assert len(fanout["master_cpu_seconds"]) == 3
    assert all(n >= 1 for n in fanout["channels"]), fanout["channels"]
    # a fan-out channel on every master: each processes a fair share of the publishes (counted, not timed)
    assert min(fanout["commands"]) >= 0.15 * sum(fanout["commands"]), fanout["commands"]
