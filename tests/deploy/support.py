"""Shared helpers of the deployment checks: the README's variable table, the chart renderer,
compose interpolation and process handling. Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
CHART = ROOT / "charts" / "vonix"
KUBERNETES_VERSION = "1.30.0"
# Renderers the chart tests used, for the end-of-run summary (tests/deploy/conftest.py).
RENDERERS_USED: set[str] = set()


# --- the README's configuration table: what the app reads --------------------------------------

_ROW = re.compile(r"^\| `(?P<name>[A-Z][A-Z0-9_]*)` \| (?P<default>[^|]*) \|")


def readme_variables() -> dict[str, str]:
    """Every variable of the README's configuration table -> its documented default."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    variables = {m["name"]: m["default"].strip() for m in map(_ROW.match, section.splitlines()) if m}
    assert len(variables) >= 20, "the README configuration table could not be parsed"
    return variables


def default_is_unset(documented_default: str) -> bool:
    """True when the README says the app's default is 'nothing' (so leaving it out is honest)."""
    return bool(re.search(r"\b(unset|empty)\b", documented_default))


def tool(name: str) -> str:
    """A tool from the project's virtualenv, else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed; `make test` installs the test extra"
    return found


# --- the Helm chart ----------------------------------------------------------------------------

def render_chart(values: Mapping[str, Any] | None, *, name: str = "vonix",
                 namespace: str = "vonix") -> tuple[str, dict[str, list[dict[str, Any]]]]:
    """Render the chart: {template path: [documents]} without NOTES.txt and empty templates.

    `helm template` when a helm binary exists; otherwise the Helm SDK through helm_python (no helm
    binary is published on the registries these machines can reach). Returns the renderer's name.
    """
    helm = shutil.which("helm")
    if helm:
        RENDERERS_USED.add("helm template")
        return "helm template", _render_with_cli(helm, values, name, namespace)
    import helm_python

    with helm_python.Chart.load(str(CHART)) as chart:
        rendered = chart.render(dict(values or {}), name=name, namespace=namespace, is_install=True)
    renderer = f"helm_python (Helm SDK {helm_python.helm_sdk_version()}; no helm binary available)"
    RENDERERS_USED.add(renderer)
    return renderer, _documents(rendered)


def _render_with_cli(helm: str, values: Mapping[str, Any] | None, name: str,
                     namespace: str) -> dict[str, list[dict[str, Any]]]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump(dict(values or {}), handle)
        handle.flush()
        output = subprocess.run(
            [helm, "template", name, str(CHART), "--namespace", namespace, "--values", handle.name],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout
    rendered: dict[str, str] = {}
    for chunk in output.split("---\n"):
        match = re.search(r"^# Source: (\S+)", chunk, re.M)
        if match:
            rendered[match[1]] = rendered.get(match[1], "") + "\n---\n" + chunk
    return _documents(rendered)


def _documents(rendered: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    documents: dict[str, list[dict[str, Any]]] = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        if docs:
            documents[path] = docs
    return documents


def by_kind(documents: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for docs in documents.values():
        for doc in docs:
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def production_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values-production.yaml").read_text())


def redis_cluster_values() -> dict[str, Any]:
    """The Redis Cluster overlay (charts/vonix/values-redis-cluster.yaml)."""
    return yaml.safe_load((CHART / "values-redis-cluster.yaml").read_text())


def layered(*files: Mapping[str, Any]) -> dict[str, Any]:
    """Values files merged the way `helm -f A -f B` merges them: maps key by key, the later
    file winning; anything else (lists included) replaced whole."""
    merged: dict[str, Any] = {}
    for values in files:
        for key, value in values.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = layered(merged[key], value)
            else:
                merged[key] = value
    return merged


# --- docker compose ----------------------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose-style `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        current = env.get(name, "")
        if op in (":-", ":?"):
            missing = not current
        else:
            missing = not present
        if not missing:
            return current
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return _INTERPOLATION.sub(replace, value)


def referenced_variables(text: str) -> dict[str, str | None]:
    """Variables a compose file interpolates -> their operator (None when bare)."""
    found: dict[str, str | None] = {}
    for match in _INTERPOLATION.finditer(text):
        name = match["name"] or match["bare"]
        if name:
            found.setdefault(name, match["op"])
    return found


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a dotenv file (comments and blank lines ignored)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# --- processes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replica:
    """A `vonix serve` process of the `replicas` fixture."""

    name: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any Vonix setting, plus `extra`."""
    variables = readme_variables()
    env = {k: v for k, v in os.environ.items() if k not in variables}
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Collects started processes and stops every one on exit, even after a failure."""
    started: list[subprocess.Popen[Any]] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            stop_process(process)


def wait_http(url: str, process: subprocess.Popen[Any], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s:\n{log.read_text()}")
