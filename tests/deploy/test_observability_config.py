"""Prometheus, alert rules and Grafana provisioning under config/: well formed, wired to each
other, and asking only for metrics a running replica really exposes."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import yaml

from tests.deploy.support import ROOT, Replica

CONFIG = ROOT / "config"
DASHBOARDS = CONFIG / "grafana" / "dashboards"
# Series Prometheus makes up itself for every target.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "clamp_min", "clamp_max", "topk", "bottomk", "abs", "and", "or", "unless", "offset", "bool",
}


def metric_names(expression: str) -> set[str]:
    """Metric names a PromQL expression reads (strings, label matchers, ranges, groupings and
    numbers removed; what is left besides functions and keywords is a metric)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![\w.])\d+(\.\d+)?(e[-+]?\d+)?\b", "", text)
    return {word for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text) if word not in PROMQL_WORDS}


def exposed_sample_names(exposition: str) -> set[str]:
    """Every sample name the families in a /metrics page can produce, from their TYPE lines."""
    suffixes = {"counter": ("", "_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count", "_created"), "summary": ("", "_sum", "_count"),
                "untyped": ("",)}
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        base = family.removesuffix("_total") if kind == "counter" else family
        names |= {base + suffix for suffix in suffixes.get(kind, ("",))}
    return names


def dashboard_expressions() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        expressions = [target["expr"] for panel in dashboard["panels"]
                       for target in panel.get("targets", []) if target.get("expr")]
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            match = re.search(r"label_values\((\w+)", json.dumps(query))
            if match:
                expressions.append(match[1])
        found[path.name] = expressions
    return found


def rule_expressions() -> list[str]:
    expressions = []
    for path in sorted((CONFIG / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule.get("alert") and rule.get("expr"), rule
                assert rule.get("annotations", {}).get("summary"), f"{rule['alert']} has no summary"
                expressions.append(rule["expr"])
    return expressions


def test_metric_name_extraction() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(vonix_http_request_duration_seconds_bucket'
        '{instance=~"$instance"}[$__rate_interval]))) / clamp_min(sum(up{job="vonix"}), 1e-9)'
    ) == {"vonix_http_request_duration_seconds_bucket", "up"}


def test_dashboards_and_alerts_use_only_exposed_metrics(replicas: list[Replica]) -> None:
    exposition = httpx.get(f"{replicas[0].url}/metrics", timeout=5).text
    available = exposed_sample_names(exposition) | PROMETHEUS_SYNTHETIC
    assert {"vonix_redis_up", "vonix_db_query_duration_seconds_bucket",
            "vonix_http_requests_total"} <= available, "the replica exposes fewer families than expected"
    sources = {**dashboard_expressions(), "alert rules": rule_expressions()}
    assert sources["vonix-overview.json"], "the starter dashboard has no queries"
    for source, expressions in sources.items():
        for expression in expressions:
            unknown = metric_names(expression) - available
            assert not unknown, f"{source}: {sorted(unknown)} not exposed by /metrics ({expression})"


def test_prometheus_scrapes_every_replica_and_loads_the_rules() -> None:
    config = yaml.safe_load((CONFIG / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    vonix = jobs["vonix"]
    # One target per replica (DNS A records of the compose service), never through nginx.
    assert vonix["dns_sd_configs"] == [{"names": ["app"], "type": "A", "port": 8000, "refresh_interval": "15s"}]
    assert vonix["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./config/prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    provisioning = CONFIG / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())
    uids = {d["uid"]: d for d in datasources["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    assert uids["jaeger"]["type"] == "jaeger"
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./config/grafana/dashboards:{providers[0]['options']['path']}:ro" in mounts

    for path in DASHBOARDS.glob("*.json"):
        dashboard: dict[str, Any] = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids, f"{path.name}: {panel['title']}"


def test_log_shipper_reads_the_labelled_containers() -> None:
    config = yaml.safe_load((CONFIG / "logging" / "filebeat.yml").read_text())
    assert config["output.elasticsearch"]["hosts"] == ["http://elasticsearch:9200"]
    provider = config["filebeat.autodiscover"]["providers"][0]
    assert provider["hints.enabled"] is True and provider["hints.default_config"]["enabled"] is False
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("app", "nginx"):
        assert compose["services"][name]["labels"]["co.elastic.logs/enabled"] == "true"
