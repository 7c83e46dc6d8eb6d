"""With PROMETHEUS_MULTIPROC_DIR set, /metrics merges what several worker processes counted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
from server.observability.metrics import Metrics
m = Metrics()
for _ in range({n}):
    m.http_requests.labels("GET", "/api/health", "200").inc()
"""
RENDER = """
import sys
from server.observability.metrics import Metrics
sys.stdout.write(Metrics().render().decode())
"""


def test_workers_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", WORKER.format(n=n)], env=env, check=True, timeout=60)
    text = subprocess.run([sys.executable, "-c", RENDER], env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout
    families = {f.name: f for f in text_string_to_metric_families(text)}
    total = sum(s.value for s in families["vonix_http_requests"].samples
                if s.name == "vonix_http_requests_total" and s.labels["route"] == "/api/health")
    assert total == 7
