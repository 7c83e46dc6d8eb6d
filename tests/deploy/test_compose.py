"""docker-compose.yml and .env.example: valid Compose, healthy-by-construction, complete settings.

No Docker engine here: the file is checked against the Compose specification's JSON schema and
its app environment is interpolated the way compose would and fed to the real settings loader.
The `cluster` profile's init script runs for real against six local redis-server processes
started from the profile's own node configuration.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.support import (
    ROOT,
    MissingVariable,
    default_is_unset,
    env_file,
    interpolate,
    readme_variables,
    referenced_variables,
    tool,
)
from tests.support.services import RedisServer, wait_port

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CLUSTER_CONFIG = ROOT / "config" / "redis-cluster"
CLUSTER_NODES = [f"redis-node-{n}" for n in range(1, 7)]
CLUSTER_INIT = "redis-cluster-init"
# Services that run once and exit: no health to check, and nothing may wait for their health.
ONE_SHOT = {CLUSTER_INIT}
# The stack `docker compose up -d` starts without a profile (issue 19 must leave it as it was).
DEFAULT_SERVICES = {"app", "nginx", "postgres", "redis", "prometheus", "grafana", "jaeger"}
# What an operator fills in before `docker compose up -d` (empty in .env.example on purpose).
FILLED_IN = {
    "SECRET_KEY": "s" * 48,
    "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin-password",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def app_environment(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["app"]["environment"]


def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_has_a_health_check(compose: dict[str, Any]) -> None:
    expected = {"app", "nginx", "postgres", "redis", "prometheus", "grafana", "jaeger",
                "elasticsearch", "kibana", "filebeat", "bot"}
    services = compose["services"]
    assert expected <= set(services), expected - set(services)
    for name, service in services.items():
        if name in ONE_SHOT:
            # It exits: a restart policy would run it again forever, a health check never runs.
            assert service["restart"] == "no" and "healthcheck" not in service, name
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
    assert "/api/health" in " ".join(services["app"]["healthcheck"]["test"])


def test_dependencies_wait_for_health(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dependency, rule in depends.items():
            assert rule["condition"] == "service_healthy", f"{name} -> {dependency}"
    assert set(compose["services"]["app"]["depends_on"]) == {"postgres", "redis"}


def test_stack_shape(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert str(services["app"]["deploy"]["replicas"]) in {"2", "${VONIX_REPLICAS:-2}"}
    # Data lives in named volumes, not in containers or host paths.
    stateful = [("postgres", "/var/lib/postgresql/data"), ("redis", "/data")]
    for name, mount in [*stateful, *((node, "/data") for node in CLUSTER_NODES)]:
        source = next(v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == mount)
        assert source in compose["volumes"], f"{name} data should be a named volume"
    for name in ("elasticsearch", "kibana", "filebeat"):
        assert services[name]["profiles"] == ["logging"]
    assert services["bot"]["profiles"] == ["bot"]
    assert services["bot"]["build"]["target"] == "bot"
    # Every host file the stack mounts exists in the repository.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    # Admin UIs are published on loopback only.
    for name in ("prometheus", "grafana", "jaeger", "kibana"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_app_environment_lists_every_variable_the_app_reads(compose: dict[str, Any]) -> None:
    readme = readme_variables()
    environment = app_environment(compose)
    assert set(environment) == set(readme), {
        "missing": sorted(set(readme) - set(environment)),
        "unknown to the app": sorted(set(environment) - set(readme)),
    }
    for variable, value in environment.items():
        # null: left to the app's own default, which must then be "unset" or random.
        if value is None:
            assert default_is_unset(readme[variable]) or "random" in readme[variable], variable


def test_env_example_lists_every_variable_and_everything_compose_needs() -> None:
    text = ENV_EXAMPLE.read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.M))
    missing = set(readme_variables()) - listed
    assert not missing, f".env.example does not mention {sorted(missing)}"
    # A variable compose requires or reads without a default must be in .env.example.
    for name, operator in referenced_variables(COMPOSE_FILE.read_text()).items():
        if operator in (None, ":?", "?"):
            assert name in env_file(ENV_EXAMPLE), f"{name} is required by compose but not in .env.example"


def test_required_secrets_stop_compose_when_missing(compose: dict[str, Any]) -> None:
    environment = app_environment(compose)
    with pytest.raises(MissingVariable, match="SECRET_KEY"):
        interpolate(environment["SECRET_KEY"], env_file(ENV_EXAMPLE))


def resolved_app_environment(compose: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """The app's environment as compose would hand it to the container, given .env and shell."""
    resolved = {}
    for key, value in app_environment(compose).items():
        if value is None:
            # No value: compose passes the variable through from .env or the shell, if set.
            if key in dotenv:
                resolved[key] = dotenv[key]
        else:
            resolved[key] = interpolate(str(value), dotenv)
    return resolved


def load_app_settings(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    from server.settings import load_settings

    for variable in readme_variables():
        monkeypatch.delenv(variable, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return load_settings(_env_file=None)


def test_interpolated_app_environment_is_accepted_by_the_app(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = readme_variables()
    resolved = resolved_app_environment(compose, env_file(ENV_EXAMPLE) | FILLED_IN)
    for key, value in resolved.items():
        # The app reads an empty string as a value, not as "unset": harmless only where the
        # documented default is itself empty.
        assert value != "" or "empty" in readme[key], f"{key} would reach the app as an empty string"
    settings = load_app_settings(resolved, monkeypatch)
    assert settings.is_production and settings.replicas == 2
    assert settings.database.dialect == "postgresql"
    assert settings.redis_url == "redis://redis:6379/0" and settings.redis_cluster is False
    assert settings.trusted_proxies == ["172.30.0.10"]
    assert settings.static_dir == "/app/static"
    assert settings.should_migrate_on_start is False
    # The container may be SIGKILLed only after the drain and uvicorn's 5 s margin.
    grace = compose["services"]["app"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > settings.drain_seconds + 5
    # nginx's fixed address is the one the app trusts.
    nginx = compose["services"]["nginx"]["networks"]["backend"]["ipv4_address"]
    assert settings.trusted_proxies == [nginx]


def test_yaml_files_are_tidy() -> None:
    files = [COMPOSE_FILE, *sorted((ROOT / "config").rglob("*.yml")),
             *sorted((ROOT / "charts" / "vonix").glob("values*.yaml")),
             ROOT / "charts" / "vonix" / "Chart.yaml"]
    config = ("{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
              "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}")
    result = subprocess.run([tool("yamllint"), "-s", "-d", config, *map(str, files)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


# --- the `cluster` profile: a six-node Redis Cluster ------------------------------------------


def test_default_profile_is_unchanged_by_the_cluster_profile(compose: dict[str, Any]) -> None:
    """`docker compose up -d` without a profile starts what it always did, and nothing it starts
    waits for (or is started with) a service of a profile."""
    services = compose["services"]
    unprofiled = {name for name, service in services.items() if not service.get("profiles")}
    assert unprofiled == DEFAULT_SERVICES
    for name in unprofiled:
        assert set(services[name].get("depends_on", {})) <= unprofiled, name
    assert set(services["app"]["depends_on"]) == {"postgres", "redis"}
    for name in [*CLUSTER_NODES, CLUSTER_INIT]:
        assert services[name]["profiles"] == ["cluster"], name
    # Without REDIS_URL / REDIS_CLUSTER in .env the app still uses the stack's single Redis.
    environment = app_environment(compose)
    assert interpolate(environment["REDIS_URL"], {}) == "redis://redis:6379/0"
    assert interpolate(environment["REDIS_CLUSTER"], {}) == "false"


def test_cluster_nodes_are_cluster_enabled_persistent_and_health_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = node_configuration()
    assert config["cluster-enabled"] == "yes" and config["appendonly"] == "yes"
    # Clients are sent to nodes by the names the compose network resolves, not container IPs.
    assert config["cluster-preferred-endpoint-type"] == "hostname"
    # In the working directory, /data in the image: the node's volume.
    assert "dir" not in config and config["cluster-config-file"] == "nodes.conf"
    # The single Redis's guards hold on every node too.
    single = " ".join(services["redis"]["command"])
    for option in ("maxmemory-policy", "client-output-buffer-limit"):
        assert f"--{option} {config[option]}" in single.replace('"', ""), option
    addresses = set()
    for name in CLUSTER_NODES:
        node = services[name]
        assert node["image"] == services["redis"]["image"], name
        command = node["command"]
        assert command[:2] == ["redis-server", "/usr/local/etc/redis/node.conf"], name
        assert command[command.index("--cluster-announce-hostname") + 1] == name
        assert "./config/redis-cluster/node.conf:/usr/local/etc/redis/node.conf:ro" in node["volumes"]
        assert node["healthcheck"]["test"] == services["redis"]["healthcheck"]["test"], name
        assert node["restart"] == "unless-stopped", name
        addresses.add(node["networks"]["backend"]["ipv4_address"])
    # Fixed, distinct, inside the backend subnet and clear of nginx's address.
    assert len(addresses) == len(CLUSTER_NODES)
    assert all(a.startswith("172.30.0.") for a in addresses)
    assert services["nginx"]["networks"]["backend"]["ipv4_address"] not in addresses


def test_cluster_init_waits_for_healthy_nodes_and_runs_the_repository_script(compose: dict[str, Any]) -> None:
    init = compose["services"][CLUSTER_INIT]
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in CLUSTER_NODES}
    assert init["command"] == ["sh", "/usr/local/etc/redis/create-cluster.sh"]
    assert "./config/redis-cluster/create-cluster.sh:/usr/local/etc/redis/create-cluster.sh:ro" in init["volumes"]
    assert init["environment"]["REDIS_CLUSTER_NODES"].split() == [f"{name}:6379" for name in CLUSTER_NODES]
    assert init["environment"]["REDIS_CLUSTER_REPLICAS"] == "1"
    # Guarded creation, never a reset: the one `--cluster create` runs only when every node is
    # empty; FLUSHALL / CLUSTER RESET appear only in advice the script prints.
    commands = [line.strip() for line in (CLUSTER_CONFIG / "create-cluster.sh").read_text().splitlines()
                if line.strip() and not line.strip().startswith(("#", "log "))]
    creates = [i for i, line in enumerate(commands) if "--cluster create" in line]
    assert len(creates) == 1
    assert commands[creates[0] - 1] == 'if [ -z "$formed" ] && [ -z "$other" ]; then'
    assert not [line for line in commands if re.search(r"flushall|reset", line, re.I)]


def test_cluster_environment_is_accepted_by_the_app(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented command's two variables turn the app to cluster mode on a profile node."""
    text = ENV_EXAMPLE.read_text()
    documented = "REDIS_CLUSTER=true REDIS_URL=redis://redis-node-1:6379/0 docker compose --profile cluster up"
    assert documented in text
    shell = {"REDIS_CLUSTER": "true", "REDIS_URL": "redis://redis-node-1:6379/0"}
    resolved = resolved_app_environment(compose, env_file(ENV_EXAMPLE) | FILLED_IN | shell)
    settings = load_app_settings(resolved, monkeypatch)
    assert settings.redis_cluster is True
    assert urlsplit(settings.redis_url).hostname in CLUSTER_NODES


# --- create-cluster.sh against real local nodes ---------------------------------------------


def node_configuration() -> dict[str, str]:
    """`directive value` lines of config/redis-cluster/node.conf."""
    lines = (CLUSTER_CONFIG / "node.conf").read_text().splitlines()
    pairs = (line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


class ProfileNode(RedisServer):
    """A redis-server started from the profile's own node.conf, as a redis-node-N container is;
    overridden only what a loopback test must: port, bind address, directory, daemonizing."""

    def start(self) -> ProfileNode:
        subprocess.run(
            [self.binary, str(CLUSTER_CONFIG / "node.conf"), "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.dir), "--daemonize", "yes", "--pidfile", str(self.dir / "redis.pid"),
             "--logfile", str(self.dir / "redis.log"), "--cluster-announce-hostname", "localhost"],
            check=True,
        )
        wait_port(self.port)
        return self

    def command(self, *args: str) -> str:
        return subprocess.run([self.cli, "-p", str(self.port), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout


@contextlib.contextmanager
def profile_nodes(count: int) -> Iterator[list[ProfileNode]]:
    nodes: list[ProfileNode] = []
    try:
        for _ in range(count):
            nodes.append(ProfileNode())
            nodes[-1].start()
        yield nodes
    finally:
        for node in nodes:
            node.cleanup()


def run_init_script(nodes: list[ProfileNode]) -> subprocess.CompletedProcess[str]:
    """The script the init container runs, with the node list its environment would carry."""
    env = {"PATH": os.environ["PATH"], "REDIS_CLUSTER_TIMEOUT": "30",
           "REDIS_CLUSTER_NODES": " ".join(f"127.0.0.1:{node.port}" for node in nodes)}
    return subprocess.run(["sh", str(CLUSTER_CONFIG / "create-cluster.sh")], env=env, capture_output=True,
                          text=True, timeout=90, check=False)


def topology(node: ProfileNode) -> set[tuple[str, ...]]:
    """Who is who in CLUSTER NODES: id, role, master, config epoch, slots (no timings)."""
    rows = set()
    for line in node.command("cluster", "nodes").splitlines():
        fields = line.split()
        role = "master" if "master" in fields[2].split(",") else "replica"
        rows.add((fields[0], role, fields[3], fields[6], *fields[8:]))
    return rows


def settled(nodes: list[ProfileNode], expected: int, timeout: float = 20.0) -> set[tuple[str, ...]]:
    """The topology once every node sees `expected` nodes, none in handshake, all views agreeing
    (gossip spreads the replicas' roles a moment after `cluster_state:ok`)."""
    deadline = time.monotonic() + timeout
    while True:
        views = [node.command("cluster", "nodes") for node in nodes]
        tables = [topology(node) for node in nodes]
        if all(len(view.splitlines()) == expected and "handshake" not in view for view in views) and all(
                table == tables[0] for table in tables):
            return tables[0]
        assert time.monotonic() < deadline, views
        time.sleep(0.1)


def test_init_script_forms_the_cluster_once_and_a_second_run_changes_nothing() -> None:
    from redis.cluster import RedisCluster

    with profile_nodes(6) as nodes:
        first = run_init_script(nodes)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "creating the cluster" in first.stdout
        for node in nodes:
            assert "cluster_state:ok" in node.command("cluster", "info")
        before = settled(nodes, 6)
        roles = [row[1] for row in before]
        assert roles.count("master") == 3 and roles.count("replica") == 3, before
        # Every master has one replica; every slot is served.
        masters = {row[0] for row in before if row[1] == "master"}
        assert sorted(row[2] for row in before if row[1] == "replica") == sorted(masters)
        # The app's client reaches every node through the announced name (here `localhost`).
        endpoints = {line.strip() for line in nodes[0].command("cluster", "shards").splitlines()}
        assert "localhost" in endpoints, "nodes do not announce their hostname"
        client = RedisCluster.from_url(f"redis://127.0.0.1:{nodes[0].port}/0")
        try:
            keys = {f"k{i}": str(i) for i in range(60)}
            for key, value in keys.items():
                client.set(key, value)
            assert len({client.keyslot(key) // 5462 for key in keys}) == 3, "keys should span the shards"

            second = run_init_script(nodes)
            assert second.returncode == 0, second.stdout + second.stderr
            assert "not creating it again" in second.stdout and "creating the cluster" not in second.stdout
            assert settled(nodes, 6) == before
            assert {key: client.get(key).decode() for key in keys} == keys
        finally:
            client.close()


def test_init_script_refuses_a_half_formed_cluster_and_changes_nothing() -> None:
    """Two nodes that met but own no slots (a create cut short), one empty: no guess, no create,
    no reset, exit 1."""
    with profile_nodes(3) as nodes:
        assert nodes[0].command("cluster", "meet", "127.0.0.1", str(nodes[1].port)).strip() == "OK"
        settled(nodes[:2], 2)
        before = [topology(node) for node in nodes]
        result = run_init_script(nodes)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "refusing to guess" in result.stdout
        assert [topology(node) for node in nodes] == before
