"""docker-compose.yml and .env.example: valid Compose, healthy-by-construction, complete settings.

No Docker engine here: the file is checked against the Compose specification's JSON schema and
its app environment is interpolated the way compose would and fed to the real settings loader.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

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

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
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
    for name, mount in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
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


def test_interpolated_app_environment_is_accepted_by_the_app(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.settings import load_settings

    readme = readme_variables()
    dotenv = env_file(ENV_EXAMPLE) | FILLED_IN
    resolved = {}
    for key, value in app_environment(compose).items():
        if value is None:
            # No value: compose passes the variable through from .env or the shell, if set.
            if key in dotenv:
                resolved[key] = dotenv[key]
        else:
            resolved[key] = interpolate(str(value), dotenv)
    for key, value in resolved.items():
        # The app reads an empty string as a value, not as "unset": harmless only where the
        # documented default is itself empty.
        assert value != "" or "empty" in readme[key], f"{key} would reach the app as an empty string"
    for variable in readme:
        monkeypatch.delenv(variable, raising=False)
    for key, value in resolved.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(_env_file=None)
    assert settings.is_production and settings.replicas == 2
    assert settings.database.dialect == "postgresql"
    assert settings.redis_url == "redis://redis:6379/0"
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
