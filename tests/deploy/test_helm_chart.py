"""charts/vonix: lint, render for default and production values, validate every manifest against
the Kubernetes schemas offline, and check what the pods will actually get."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.support import (
    CHART,
    KUBERNETES_VERSION,
    Replica,
    by_kind,
    default_is_unset,
    layered,
    production_values,
    readme_variables,
    redis_cluster_values,
    render_chart,
)

# URLs that may carry a password or a token (a Discord/Slack webhook URL is its own credential).
CREDENTIAL_URLS = {"DATABASE_URL", "REDIS_URL", "SMTP_URL", "ALERT_WEBHOOK_URLS", "DISCORD_WEBHOOK_URL"}


def looks_secret(variable: str) -> bool:
    """Credentials, and the URLs that carry them: these belong in the Secret."""
    credential = re.search(r"(SECRET|PASSWORD|PRIVATE_KEY|TOKEN)(_KEY)?(_PREVIOUS)?$", variable)
    return bool(credential) or variable in CREDENTIAL_URLS


# Every optional part switched on, so no template goes unrendered.
EVERYTHING_ON: dict[str, Any] = {
    "autoscaling": {"enabled": True, "connections": {"enabled": True}},
    "serviceMonitor": {"enabled": True},
    "networkPolicy": {"egress": {"enabled": True, "to": [{"ports": [{"port": 5432, "protocol": "TCP"}]}]}},
    "settings": {"VONIX_INSTANCE_ID": "pinned", "ALLOWED_ORIGINS": "https://a.example"},
    "imagePullSecrets": [{"name": "registry"}],
}

VALUE_SETS = {
    "default": None,
    "production": production_values(),
    "everything-on": EVERYTHING_ON,
    # `-f values-production.yaml -f values-redis-cluster.yaml`, as the overlay's header says.
    "redis-cluster": layered(production_values(), redis_cluster_values()),
}

# ServiceMonitor is a Prometheus Operator CRD: kubernetes-validate has no schema for it. This is
# our own schema of the fields the chart uses, named as in the CRD (monitoring.coreos.com/v1).
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object"}}},
                "namespaceSelector": {"type": "object", "properties": {
                    "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                    }}},
            },
        },
    },
}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    renderer, documents = render_chart(VALUE_SETS[request.param])
    print(f"chart rendered with {renderer} ({request.param} values)")
    return request.param, by_kind(documents)


def single(kinds: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    assert len(kinds.get(kind, [])) == 1, f"expected one {kind}, got {len(kinds.get(kind, []))}"
    return kinds[kind][0]


def app_container(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return single(kinds, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def single_or_empty(kinds: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, str]:
    return kinds[kind][0]["stringData"] if kind in kinds else {}


def test_renderer_is_reported() -> None:
    renderer, _ = render_chart(None)
    assert renderer.startswith(("helm template", "helm_python"))
    print(f"renderer: {renderer}")


def test_chart_lints_clean_in_strict_mode() -> None:
    import shutil
    import subprocess

    helm = shutil.which("helm")
    for values in (None, production_values(), VALUE_SETS["redis-cluster"]):
        if helm:  # pragma: no cover - no helm binary on these machines
            result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr
            continue
        import helm_python

        report = helm_python.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
        assert report["errors"] == []
        # Severity 2 = warning, 3 = error; 1 (info) is only "icon is recommended".
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_manifest_validates_against_the_kubernetes_schemas(
    rendered: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    name, kinds = rendered
    validated = []
    for kind, documents in kinds.items():
        for document in documents:
            if kind == "ServiceMonitor":
                jsonschema.validate(document, SERVICE_MONITOR_SCHEMA)
                validated.append(f"{kind} (chart's CRD subset schema)")
                continue
            # strict: unknown fields are errors, so a misspelt key cannot pass silently.
            version = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            validated.append(f"{kind} (Kubernetes {version})")
    print(f"{name}: " + ", ".join(sorted(validated)))
    expected = {"ConfigMap", "Deployment", "Service", "Ingress", "ServiceAccount", "NetworkPolicy",
                "PodDisruptionBudget", "Job"}
    assert expected <= set(kinds), expected - set(kinds)
    if name != "default":
        assert "HorizontalPodAutoscaler" in kinds
    if name == "everything-on":
        assert "ServiceMonitor" in kinds


def test_deployment_is_safe_to_run_and_to_stop(rendered: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
    _, kinds = rendered
    deployment = single(kinds, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = app_container(kinds)

    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["affinity"]["podAntiAffinity"]

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    config = single(kinds, "ConfigMap")["data"]
    drain = float(config.get("DRAIN_SECONDS", "10"))
    # SIGKILL must come after preStop + the drain + uvicorn's 5 s margin (server/cli.py).
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain + 5
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_values_and_manifests_cover_every_variable_the_app_reads(
    rendered: tuple[str, dict[str, list[dict[str, Any]]]],
) -> None:
    name, kinds = rendered
    readme = readme_variables()
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        values = chart.merge_values(VALUE_SETS[name])
    # One value per variable, same name: the README table and the chart cannot drift apart.
    assert set(values["settings"]) | set(values["secrets"]) == set(readme), {
        "missing": sorted(set(readme) - set(values["settings"]) - set(values["secrets"])),
        "unknown to the app": sorted((set(values["settings"]) | set(values["secrets"])) - set(readme)),
    }
    assert set(values["secrets"]) == {v for v in readme if looks_secret(v)}
    assert not set(values["settings"]) & set(values["secrets"])

    config = single(kinds, "ConfigMap")["data"]
    assert not set(values["secrets"]) & set(config), "secrets must not be in the ConfigMap"
    container = app_container(kinds)
    from_env = {item["name"] for item in container.get("env", [])}
    secret_ref = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
    assert secret_ref == [values["existingSecret"] or "vonix"]
    if values["existingSecret"]:
        from_secret = set(values["secrets"])  # whatever the operator's Secret holds
    else:
        from_secret = set(single(kinds, "Secret")["stringData"])
    reaching = set(config) | from_env | from_secret
    for variable in set(readme) - reaching:
        # Left out only when empty in values and the app's own default is "nothing": an empty
        # string is not "unset" to the app, so empty values are not rendered at all.
        value = {**values["settings"], **values["secrets"]}[variable]
        assert value == "" and default_is_unset(readme[variable]), variable
    for name, value in {**config, **single_or_empty(kinds, "Secret")}.items():
        assert value != "", f"{name} is rendered empty"


def test_rendered_configuration_is_accepted_by_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap + Secret + env of the default render, fed to the real settings loader."""
    from server.settings import load_settings

    _, documents = render_chart(None)
    kinds = by_kind(documents)
    environment = dict(single(kinds, "ConfigMap")["data"])
    environment.update(single(kinds, "Secret")["stringData"])
    environment["VONIX_INSTANCE_ID"] = "vonix-7d9f-abcde"  # the downward API's pod name
    for variable in readme_variables():
        monkeypatch.delenv(variable, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(_env_file=None)
    assert settings.is_production and settings.replicas == 2
    assert settings.database.dialect == "postgresql" and settings.redis_url
    assert settings.should_migrate_on_start is False, "pods must leave migrations to the Job"
    assert len(settings.secret()) >= 32
    assert settings.port == 8000 and settings.host == "0.0.0.0"


def test_migration_job_is_a_pre_upgrade_hook_after_the_secret() -> None:
    _, documents = render_chart(None)
    kinds = by_kind(documents)
    job = single(kinds, "Job")
    secret = single(kinds, "Secret")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert {"pre-install", "pre-upgrade"} <= set(hooks)
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["vonix", "migrate", "up"]
    inline = {item["name"]: item.get("value") for item in container["env"]}
    assert inline["VONIX_ENV"] == "production"
    # Not the chart's ServiceAccount: it does not exist yet when a first install runs hooks.
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_production_uses_the_existing_secret_and_autoscales() -> None:
    _, documents = render_chart(production_values())
    kinds = by_kind(documents)
    assert "Secret" not in kinds
    hpa = single(kinds, "HorizontalPodAutoscaler")
    resources = {m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"}
    assert resources == {"cpu", "memory"}
    assert "replicas" not in single(kinds, "Deployment")["spec"], "the HPA owns the replica count"
    assert single(kinds, "ConfigMap")["data"]["VONIX_REPLICAS"] == str(hpa["spec"]["maxReplicas"])
    ingress = single(kinds, "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == [r["host"] for r in ingress["spec"]["rules"]]
    assert int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600


def test_connection_metric_scaling_is_optional_and_names_the_app_gauge(replicas: list[Replica]) -> None:
    _, documents = render_chart(None)
    hpa_off = by_kind(documents).get("HorizontalPodAutoscaler", [])
    assert not hpa_off, "autoscaling is off by default"
    _, documents = render_chart(EVERYTHING_ON)
    hpa = single(by_kind(documents), "HorizontalPodAutoscaler")
    pods = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods == ["vonix_ws_connections"]
    # The name must be a gauge a running replica really exposes (prometheus-adapter serves it).
    exposition = httpx.get(f"{replicas[0].url}/metrics", timeout=5).text
    assert re.search(r"^# TYPE vonix_ws_connections gauge$", exposition, re.M), "no vonix_ws_connections gauge"


# Values the numeric settings are probed with: around every bound the app declares.
NUMERIC_SAMPLES = ["0", "0.5", "1", "1.5", "2", "7", "8", "9", "10", "29", "30", "59", "60", "61", "299", "300",
                   "511", "512", "1023", "1024", "1800", "4095", "4096", "10000", "10001", "65535", "65536",
                   "-1", "", "abc"]
# Where the chart is knowingly stricter than the app, or gives a value a meaning of its own.
SCHEMA_DIFFERS = {
    ("VONIX_REPLICAS", ""): "empty: the chart derives it from replicaCount / autoscaling",
    ("VONIX_PORT", "0"): "port 0 (any free port) cannot be probed or routed to",
}


def test_numeric_settings_in_the_schema_accept_what_the_app_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """values.schema.json refuses at install time what would make every pod exit with code 2, and
    nothing the app would take: each numeric setting is probed on both sides with the same strings."""
    import json

    from server.settings import ConfigError, load_settings

    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["settings"]["properties"]
    numeric = {name: prop for name, prop in schema.items()
               if any("pattern" in branch for branch in prop.get("anyOf", []))}
    assert len(numeric) >= 40, sorted(numeric)
    for variable in readme_variables():
        monkeypatch.delenv(variable, raising=False)
    disagreements = []
    for name, prop in numeric.items():
        for sample in NUMERIC_SAMPLES:
            chart_accepts = jsonschema.Draft7Validator(prop).is_valid(sample)
            monkeypatch.setenv(name, sample)
            try:
                load_settings(_env_file=None)
                app_accepts = True
            except ConfigError:
                app_accepts = False
            monkeypatch.delenv(name)
            if chart_accepts != app_accepts and (name, sample) not in SCHEMA_DIFFERS:
                disagreements.append(f"{name}={sample!r}: chart {chart_accepts}, app {app_accepts}")
    assert not disagreements, disagreements


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"LOG_LEVL": "INFO"}}, "LOG_LEVL"),
        ({"settings": {"VONIX_ENV": "prod"}}, "VONIX_ENV"),
        ({"secrets": {"SECRET_KEY": "short"}}, "SECRET_KEY"),
        ({"terminationGracePeriodSeconds": 12}, "terminationGracePeriodSeconds"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
        ({"settings": {"WS_PING_INTERVAL": "0"}}, "WS_PING_INTERVAL"),
        ({"settings": {"MAINTENANCE_BATCH_SIZE": "20000"}}, "MAINTENANCE_BATCH_SIZE"),
        ({"settings": {"MAX_BODY_BYTES": "512"}}, "MAX_BODY_BYTES"),
        ({"secrets": {"SMTP_URL": "mail.example.org:587"}}, "SMTP_URL"),
        # A Redis Cluster has only database 0 and no unix socket (the app would exit with code 2).
        ({"settings": {"REDIS_CLUSTER": "true"}, "secrets": {"REDIS_URL": "redis://redis-cluster:6379/1"}},
         "REDIS_URL"),
        ({"settings": {"REDIS_CLUSTER": True}, "secrets": {"REDIS_URL": "unix:///run/redis.sock"}}, "REDIS_URL"),
        ({"settings": {"REDIS_CLUSTER": "yes"}}, "REDIS_CLUSTER"),
    ],
)
def test_dangerous_values_are_refused_at_render_time(values: dict[str, Any], message: str) -> None:
    import helm_python

    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render_chart(values)


# --- Redis Cluster (values-redis-cluster.yaml) -----------------------------------------------

# URLs the cluster rule of values.schema.json is probed with, beside the app's own check.
CLUSTER_URL_SAMPLES = [
    "redis://redis-cluster:6379", "redis://redis-cluster:6379/", "redis://redis-cluster:6379/0",
    "redis://redis-cluster:6379/0/", "redis://redis-cluster:6379//0", "redis://redis-cluster:6379/1",
    "redis://redis-cluster:6379/00", "redis://redis-cluster/15", "rediss://:pw@redis-cluster:6380/0?ssl_cert_reqs=none",
    "rediss://:pw@redis-cluster:6380/2?ssl_cert_reqs=none", "redis://:p%2Fw@redis-cluster:6379/0",
    "unix:///run/redis.sock", "unix:///run/redis.sock?db=0",
]


def test_cluster_redis_url_rule_in_the_schema_accepts_what_the_app_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """With REDIS_CLUSTER "true" the schema refuses exactly the REDIS_URLs the app refuses at start."""
    import json

    from server.settings import ConfigError, load_settings

    schema = json.loads((CHART / "values.schema.json").read_text())
    for variable in readme_variables():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    disagreements = []
    for url in CLUSTER_URL_SAMPLES:
        values = {"settings": {"REDIS_CLUSTER": "true"}, "secrets": {"REDIS_URL": url}, "existingSecret": ""}
        chart_accepts = jsonschema.Draft7Validator({"allOf": schema["allOf"]}).is_valid(values)
        monkeypatch.setenv("REDIS_URL", url)
        try:
            load_settings(_env_file=None)
            app_accepts = True
        except ConfigError:
            app_accepts = False
        if chart_accepts != app_accepts:
            disagreements.append(f"{url}: chart {chart_accepts}, app {app_accepts}")
    assert not disagreements, disagreements
    # Both sides refuse something, so the probe is not vacuous.
    assert not jsonschema.Draft7Validator({"allOf": schema["allOf"]}).is_valid(
        {"settings": {"REDIS_CLUSTER": "true"}, "secrets": {"REDIS_URL": "redis://h:6379/1"}})


def test_redis_cluster_values_render_a_configuration_the_app_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    """The overlay on the chart's defaults: ConfigMap + Secret fed to the real settings loader."""
    from server.settings import load_settings

    _, documents = render_chart(redis_cluster_values())
    kinds = by_kind(documents)
    config = single(kinds, "ConfigMap")["data"]
    secret = single(kinds, "Secret")["stringData"]
    assert config["REDIS_CLUSTER"] == "true"
    environment = {**config, **secret, "VONIX_INSTANCE_ID": "vonix-7d9f-abcde"}
    for variable in readme_variables():
        monkeypatch.delenv(variable, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(_env_file=None)
    assert settings.redis_cluster is True
    assert settings.redis_url == redis_cluster_values()["secrets"]["REDIS_URL"]


@pytest.mark.parametrize("base", ["production", "everything-on"])
def test_redis_cluster_mode_leaves_the_autoscaler_as_it_is(base: str) -> None:
    """The HPA scales on CPU, memory and open websockets per pod whatever the Redis behind the
    pods: turning cluster mode on must not change a field of it."""
    _, plain = render_chart(VALUE_SETS[base])
    _, clustered = render_chart(layered(VALUE_SETS[base], redis_cluster_values()))
    hpa = single(by_kind(plain), "HorizontalPodAutoscaler")
    assert single(by_kind(clustered), "HorizontalPodAutoscaler") == hpa
    if base == "everything-on":
        pods = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        assert pods == ["vonix_ws_connections"]


def test_notes_mention_cluster_mode_only_when_it_is_on() -> None:
    import helm_python

    def notes(values: dict[str, Any] | None) -> str:
        with helm_python.Chart.load(str(CHART)) as chart:
            rendered = chart.render(dict(values or {}), name="vonix", namespace="vonix", is_install=True)
        return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))

    assert "Redis Cluster mode" in notes(redis_cluster_values())
    assert "Redis Cluster mode" not in notes(None)
