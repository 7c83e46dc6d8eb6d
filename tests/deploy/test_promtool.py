"""The Prometheus alert rules and scrape config pass `promtool` (Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make test installs it)")


def test_alert_rules_pass_promtool() -> None:
    rules = sorted((ROOT / "config" / "prometheus" / "rules").glob("*.yml"))
    assert rules
    result = subprocess.run([PROMTOOL, "check", "rules", *map(str, rules)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alert_rules_unit_tests_fire(tmp_path: Path) -> None:
    """A promtool rule test: five minutes of Redis down fires the RedisDown-style alert."""
    rules = ROOT / "config" / "prometheus" / "rules" / "vonix.yml"
    text = rules.read_text()
    if "vonix_redis_up" not in text:
        pytest.skip("no rule on vonix_redis_up")
    import yaml

    groups = yaml.safe_load(text)["groups"]
    alert = next(r for g in groups for r in g["rules"] if "vonix_redis_up" in r.get("expr", ""))
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": 'vonix_redis_up{instance="app-1:8000",job="vonix"}',
                              "values": "0x20"}],
            "alert_rule_test": [{"eval_time": "15m", "alertname": alert["alert"],
                                 "exp_alerts": [{"exp_labels": {**alert.get("labels", {}),
                                                                "instance": "app-1:8000", "job": "vonix"},
                                                 "exp_annotations": {
                                                     key: value.replace("{{ $labels.instance }}", "app-1:8000")
                                                     for key, value in alert.get("annotations", {}).items()}}]}],
        }],
    }
    spec = tmp_path / "test.yml"
    spec.write_text(yaml.safe_dump(test))
    result = subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
