"""The reconnect storm benchmark (issue 15, item 4) still runs end to end, at a tiny size.

It starts what `make bench` starts for it (two Vonix replicas on PostgreSQL + Redis, two
`websockets` reference replicas, the Node.js load generator): 200 clients in 10 rooms, SIGTERM to
replica A with a 1 s drain window, every client back on replica B. Times are not judged here (the
machine may be busy); that the table has its rows, that every client came back and that Vonix
delivered every message exactly once are.
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


@pytest.mark.timeout(120)
def test_bench_storm_brings_every_client_back_without_loss_or_duplicates(tmp_path: Path) -> None:
    raw = tmp_path / "results.json"
    env = {**os.environ, "BENCH_STORM_CONNECTIONS": "200", "BENCH_STORM_ROOMS": "10", "BENCH_STORM_USERS": "4",
           "BENCH_STORM_RATE": "50", "BENCH_STORM_PUBLISHERS": "2", "BENCH_STORM_DRAIN_SECONDS": "2",
           "BENCH_STORM_BEFORE": "1", "BENCH_STORM_AFTER": "1", "BENCH_JSON": str(raw)}
    result = subprocess.run([sys.executable, "-m", "bench.bench_storm"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=110, check=False)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"

    assert "Reconnect storm:" in out and "Targets (issue 15)" in out, out
    assert re.search(r"^reconnect storm: all back within 15 s, zero loss, zero duplicates\s", out, re.MULTILINE), out
    for server in ("reference", "vonix"):
        row = re.search(rf"^{server}\s+200 x 3\s+{NUMBER} s\s+({NUMBER})\s+{NUMBER}\s+({NUMBER})\s+({NUMBER})\s+"
                        rf"{NUMBER}\s+0\s", out, re.MULTILINE)
        assert row, f"no row with numbers and 0 not back for {server}:\n{out}"
    assert re.search(r"^vonix\s.*\s0\s+0\s+0 \(0 msgs\)\s", out, re.MULTILINE), out

    results = {r["server"]: r for r in json.loads(raw.read_text())["storm"]}
    vonix, reference = results["vonix"]["run"], results["reference"]["run"]
    for run in (vonix, reference):
        assert run["clients"] == 200 and run["back"] == 200 and run["not_back"] == 0 and run["failed"] == 0, run
        assert run["acked"] == run["published"] > 0 and run["refused"] == 0, run
        assert run["published_during_storm"] > 0, run
    assert vonix["closes"] == {"1012": 200}, vonix["closes"]  # drained, not dropped
    assert vonix["lost"] == 0 and vonix["duplicates"] == 0 and vonix["not_recovered"] == 0, vonix
    assert vonix["early"] == 0 and vonix["foreign"] == 0 and vonix["late"] == 0, vonix
    assert vonix["expected"] == vonix["received"] > 0, vonix
    assert vonix["recovered_messages"] > 0, vonix  # messages published while clients were away came in `missed`
