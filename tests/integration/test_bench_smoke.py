"""The fan-out benchmark still runs end to end (issue 5): tiny parameters, every table and row.

It starts the same real servers `make bench` does (Vonix embedded and scaled, the `websockets`
reference, Redis, PostgreSQL) and the Node.js load generator; only the sizes are small. Numbers
are not judged here, only that each row has them and that no message was lost.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# It runs beside the other tests: the figures are not judged here, so sharing the machine costs
# only time, and running beside them shortens `make test` by the length of this file.
pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[\d,]+(?:\.\d+)?"
LATENCY = rf"(?:{NUMBER}|-)"  # "-" when no sampled client got a message in a tiny window


@pytest.mark.timeout(330)
def test_bench_fanout_prints_every_row_with_numbers_and_loses_nothing(tmp_path: Path) -> None:
    raw = tmp_path / "results.json"
    env = {**os.environ, "BENCH_SUBSCRIBERS": "20", "BENCH_SECONDS": "0.5", "BENCH_IDLE": "200",
           "BENCH_ROOM_CLIENTS": "40", "BENCH_USERS": "1", "BENCH_RETRIES": "0", "BENCH_JSON": str(raw),
           "BENCH_SUBSCRIBE_USERS": "2", "BENCH_RESUBSCRIBE_ROUNDS": "5"}
    result = subprocess.run([sys.executable, "-m", "bench.bench_fanout"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=320, check=False)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"

    for title in ("Fan-out:", "Rooms:", "Connections:", "Resubscribing 10 rooms", "Targets (issue 5)"):
        assert title in out, out
    for scenario in ("1 replica x 20 subs", "2 replicas x 20 subs via Redis"):
        for server in ("reference", "reference, coalesce 2 ms", "vonix"):
            row = re.search(rf"^{re.escape(scenario)}\s+{re.escape(server)}\s+({NUMBER})\s+({NUMBER})x.*"
                            rf"\s0 of ({NUMBER})\s", out, re.MULTILINE)
            assert row, f"no row with numbers and `0 of N` lost for {scenario} / {server}:\n{out}"
            assert float(row.group(1).replace(",", "")) > 0
    for scenario in ("room: 1 replica x 20, 1 publisher", "room: 1 replica x 20, 4 publishers",
                     "room: 2 replicas x 10, 1 publisher", "room: 2 replicas x 10, 4 publishers"):
        for server in ("reference", "vonix"):  # the stored room's fan-out
            row = re.search(rf"^{re.escape(scenario)}\s+{server}\s+({NUMBER})\s+({NUMBER})x.*\s0 of ({NUMBER})\s",
                            out, re.MULTILINE)
            assert row and float(row.group(1).replace(",", "")) > 0, f"no row for {scenario} / {server}:\n{out}"
        assert f"{scenario}: >= 2x reference deliveries/s, zero loss" in out, out
    for subscribers in (10, 20):  # pipelined publishes to a persisted room
        scenario = f"room: 1 publisher, 50 in flight, {subscribers} subs"
        for server in ("reference", "vonix"):
            row = re.search(rf"^{re.escape(scenario)}\s+{server}\s+({NUMBER})\s+({NUMBER})x.*\s0 of ({NUMBER})\s",
                            out, re.MULTILINE)
            assert row and float(row.group(1).replace(",", "")) > 0, f"no row for {scenario} / {server}:\n{out}"
    assert re.search(r"room: 1 publisher, 50 in flight, 10 subs: >= 3,000 acknowledged messages/s", out), out
    for server in ("reference", "vonix"):
        assert re.search(rf"^{server}\s+40 in 4\s+{NUMBER}\s+{NUMBER}\s+{LATENCY}\s+{LATENCY}\s+0 of {NUMBER}",
                         out, re.MULTILINE), out
        for scenario in ("bot: 1 channel", "room: 10 rooms, 2 users"):  # connections/s, KiB, 0 failed
            assert re.search(rf"^{scenario}\s+{server}\s+200\s+{NUMBER}\s+{NUMBER}x\s+-?{NUMBER}\s+0\s", out,
                             re.MULTILINE), out
    assert re.search(rf"^one batch subscribe of 10\s+{NUMBER}\s+{NUMBER}x", out, re.MULTILINE), out

    results = json.loads(raw.read_text())
    runs = [r[k] for r in results["fanout"] for k in ("saturated", "fixed")] + [r["run"] for r in results["rooms"]]
    assert runs and all(run["lost"] == 0 and run.get("order_errors", 0) == 0 and run["closed"] == 0
                        for run in runs), runs
    assert all(r["connections"] == 200 and r["failed"] == 0 for r in results["idle"])


@pytest.mark.timeout(120)
def test_bench_presence_compares_diffs_with_one_push_per_join() -> None:
    env = {**os.environ, "BENCH_PRESENCE_MEMBERS": "60"}
    result = subprocess.run([sys.executable, "-m", "bench.bench_presence"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=110, check=False)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"
    rows = {}
    for label in ("0 ms", "200 ms"):
        row = re.search(rf"^{label} \(.*?\)\s+60\s+{NUMBER}\s+({NUMBER})\s+{NUMBER}x\s+({NUMBER})", out, re.MULTILINE)
        assert row, out
        rows[label] = (float(row.group(1).replace(",", "")), float(row.group(2).replace(",", "")))
    assert rows["0 ms"][1] == 60, out  # one diff per join: the reference
    assert 0 < rows["200 ms"][0] < rows["0 ms"][0] and rows["200 ms"][1] < 60, out
    assert "60 joins: presence pushes <= 5% of one push per join" in out, out


@pytest.mark.timeout(180)
def test_bench_search_times_both_kinds_against_the_reference() -> None:
    env = {**os.environ, "BENCH_SEARCH_MESSAGES": "5000", "BENCH_SEARCH_QUERIES": "10"}
    result = subprocess.run([sys.executable, "-m", "bench.bench_search"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=170, check=False)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"
    assert re.search(rf"Loaded 5,000 messages: COPY {NUMBER} s .* GIN index build {NUMBER} s", out), out
    for kind in ("one word", "two words"):
        row = re.search(rf"^GET /api/search \({kind}\)\s+({NUMBER})\s+({NUMBER})\s+{NUMBER}\s+({NUMBER})\s+"
                        rf"{NUMBER}\s+{NUMBER}\s+{NUMBER}x", out, re.MULTILINE)
        assert row, out
        assert 0 < float(row.group(1)) <= float(row.group(2)), out
    assert float(re.search(rf"one word\)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+({NUMBER})", out).group(1)) > 0, out
    assert "one word: p95 search latency <= 100 ms" in out and "two words: p95 search latency" in out, out
