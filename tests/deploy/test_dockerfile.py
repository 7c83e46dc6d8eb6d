"""Dockerfile and .dockerignore. No Docker engine here: hadolint, a structural read of the stages,
and the builder stage's wheel step replayed on exactly the files the build context would hold."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.support import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    current = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            current = rest.split(" AS ")[-1] if " AS " in rest else rest
            found[current] = [(keyword, rest)]
        elif current is not None:
            found[current].append((keyword, rest))
    return found


def test_hadolint_reports_nothing(tmp_path: Path) -> None:
    # Our own config (threshold: style, the lowest): no local .hadolint.yaml can relax a rule,
    # and inline ignore pragmas are disregarded.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    result = subprocess.run(
        [tool("hadolint"), "--config", str(config), "--disable-ignore-pragma", "--format", "json",
         str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and json.loads(result.stdout or "[]") == [], result.stdout + result.stderr


def test_stages_build_a_small_non_root_image_with_a_bot_target() -> None:
    found = stages(DOCKERFILE.read_text())
    assert list(found)[-1] == "app", "the default build target (last stage) is the server"
    assert {"builder", "runtime", "bot", "app"} <= set(found)
    arguments = dict(rest.split("=", 1) for keyword, rest in instructions(DOCKERFILE.read_text())
                     if keyword == "ARG" and "=" in rest)
    base = found["runtime"][0][1].split(" AS ")[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], base)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    assert found["builder"][0][1].split(" AS ")[0] == found["runtime"][0][1].split(" AS ")[0], (
        "builder and runtime share a base: the venv's interpreter path must exist in both")

    runtime = dict(found["runtime"])
    assert runtime["USER"] == "10001:10001", "runs as the uid the chart's securityContext names"
    copies = [rest for keyword, rest in found["runtime"] if keyword == "COPY"]
    assert all(c.startswith("--from=builder") for c in copies), "runtime copies only built files"
    assert "STATIC_DIR=/app/static" in runtime["ENV"]

    app = dict(found["app"])
    assert app["EXPOSE"] == "8000"
    assert "/api/health" in app["HEALTHCHECK"] and app["HEALTHCHECK"].startswith("--interval")
    assert app["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(app["CMD"]) == ["vonix", "serve", "--host", "0.0.0.0", "--port", "8000"]

    bot = dict(found["bot"])
    assert json.loads(bot["CMD"]) == ["python", "/app/examples/echo_bot.py"]


def dockerignore_keeps(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a match covers subpaths."""

    def matches(pattern: str) -> bool:
        regex = re.escape(pattern.rstrip("/"))
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        return any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))

    keep = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        if matches(pattern.lstrip("!")):
            keep = negated
    return keep


def build_context(destination: Path) -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()
    kept = sorted(p for p in listing if (ROOT / p).is_file() and dockerignore_keeps(p, patterns))
    for name in kept:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    return kept


def test_build_context_holds_only_what_the_image_needs(tmp_path: Path) -> None:
    kept = build_context(tmp_path)
    tops = {name.split("/")[0] for name in kept}
    allowed = {"pyproject.toml", "README.md", "server", "realtime", "static", "sw", "examples", "requirements"}
    assert tops <= allowed, tops
    assert {"pyproject.toml", "server", "static"} <= tops
    assert {"requirements/build.txt", "requirements/runtime.txt"} <= set(kept), "the builder installs from the locks"
    assert not [n for n in kept if n.endswith((".db", ".env")) or "__pycache__" in n]


@pytest.mark.slow
def test_builder_wheel_step_works_on_the_build_context(tmp_path: Path) -> None:
    """`pip wheel .` as the builder stage runs it, on the filtered context (offline)."""
    context = tmp_path / "context"
    kept = build_context(context)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--wheel-dir", str(out), str(context)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("vonix-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "server/cli.py" in names
    assert any(re.fullmatch(r"server/db/migrations/versions/0001_\w+\.py", n) for n in names)
    # Package data the server reads at run time (pyproject [tool.setuptools.package-data]): the
    # password policy refuses common passwords from this list; Alembic needs its template.
    assert "server/auth/data/common-passwords.txt" in names
    assert "server/db/migrations/script.py.mako" in names
    # More generally: every file of the two packages in the context reaches the image, so a new
    # data file cannot be forgotten in package-data without this failing.
    package_files = [n for n in kept if n.startswith(("server/", "realtime/"))]
    assert package_files and not sorted(set(package_files) - set(names)), sorted(set(package_files) - set(names))
    assert any(n.endswith("entry_points.txt") for n in names)
    assert not [n for n in names if n.startswith("tests/")]
