"""Dependency bounds and locks (issue 20, "Reproducible installs").

- uvicorn, websockets, redis-py, hiredis and uvloop are bounded above in pyproject.toml (Vonix builds on
  their internals), the installed versions are inside every declared range, and a version outside
  one is refused with a message naming the package, the version and the range, by the comparison
  itself and by `vonix serve`, which exits 2 before importing anything that builds on them.
- The hashed lock files satisfy pyproject.toml (a dependency added without `make lock` fails here
  with the fix in the message), and every runtime dependency is imported by the server's code.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from server.dependency_check import Mismatch, check, mismatches, runtime_requirements, startup_problem

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Packages whose internals server/ws_protocol.py, realtime/broker/subscriber.py and
# server/eager_accept.py build on.
BUILT_ON_INTERNALS = ("uvicorn", "websockets", "redis", "hiredis", "uvloop")


def declared() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in runtime_requirements()}


def load_check_lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the installed environment ----------------------------------------------------------------------

def test_installed_metadata_is_this_pyproject() -> None:
    """The check reads vonix's installed metadata: it must be what pyproject.toml says now."""
    installed = sorted(str(r) for r in runtime_requirements())
    source = sorted(str(Requirement(r)) for r in PYPROJECT["project"]["dependencies"])
    assert installed == source, ("vonix's installed metadata is older than pyproject.toml: "
                                 "`make test` re-installs it (or pip install --no-deps -e .)")


def test_installed_versions_are_inside_every_declared_range() -> None:
    found = mismatches()
    assert found == [], "\n".join(m.message() for m in found)
    assert startup_problem() is None


@pytest.mark.parametrize("name", BUILT_ON_INTERNALS)
def test_packages_vonix_builds_on_are_bounded_to_the_tested_series(name: str) -> None:
    requirement = declared()[name]
    installed = Version(metadata.version(name))
    assert any(spec.operator == "<" for spec in requirement.specifier), f"{requirement} has no upper bound"
    assert check(requirement, str(installed)) is None
    # The next release series is outside: for 0.x (uvicorn) and the others' minor releases, which is
    # where they move the internals we use. hiredis: only its public Reader/pack_command, next major.
    if name == "hiredis":
        following = f"{installed.major + 1}.0.0"
    else:
        following = f"{installed.major}.{installed.minor + 1}.0"
    assert check(requirement, following) is not None, f"{requirement} admits {following}, untested"


# --- the comparison, on version strings outside the ranges ---------------------------------------

def test_a_newer_uvicorn_is_refused_with_a_clear_message() -> None:
    uvicorn = declared()["uvicorn"]
    mismatch = check(uvicorn, "0.99.0")
    assert mismatch == Mismatch(uvicorn, "0.99.0")
    assert mismatch.message() == (
        f"uvicorn 0.99.0 is installed; vonix requires uvicorn{uvicorn.specifier} (the versions its tests ran with)")


def test_older_missing_and_unparseable_versions_are_refused() -> None:
    redis = Requirement("redis>=8.2,<8.3")
    assert check(redis, "8.2.0") is None
    assert check(redis, "8.2.7") is None
    assert check(redis, "8.3.0rc1") is not None
    assert check(redis, "8.2.1rc1") is None  # a pre-release of the tested series is inside
    assert check(redis, "7.4.1") == Mismatch(redis, "7.4.1")
    assert check(redis, "8.3.0") == Mismatch(redis, "8.3.0")
    assert check(redis, None) is not None
    assert check(redis, None).message() == "redis is not installed; vonix requires redis<8.3,>=8.2"  # type: ignore[union-attr]
    assert check(redis, "not a version") == Mismatch(redis, "not a version")


def test_mismatches_reports_each_failing_requirement_and_only_those() -> None:
    requirements = [Requirement("uvicorn[standard]>=0.55,<0.56"), Requirement("websockets>=17.4,<17.5"),
                    Requirement("redis>=8.2,<8.3")]
    fake = {"uvicorn": "0.55.3", "websockets": "18.0", "redis": None}
    found = mismatches(requirements, installed_version=fake.__getitem__)
    assert [(m.requirement.name, m.installed) for m in found] == [("websockets", "18.0"), ("redis", None)]


def test_requirements_for_extras_and_other_platforms_are_not_held_to(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["uvicorn[standard]<0.56,>=0.55", 'pytest>=8; extra == "test"', 'pywin32>=300; sys_platform == "win32"']
    (tmp_path / "example-1.0.dist-info").mkdir()
    (tmp_path / "example-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: example\nVersion: 1.0\n" + "".join(f"Requires-Dist: {line}\n" for line in lines))
    (tmp_path / "example-1.0.dist-info" / "INSTALLER").write_text("pip\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [str(r) for r in runtime_requirements("example")] == ["uvicorn[standard]<0.56,>=0.55"]


def test_a_stale_egg_info_in_the_working_directory_does_not_shadow_what_pip_installed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip wheel .` in a checkout leaves vonix.egg-info there, first on sys.path when the checkout
    is the working directory (pytest's rootdir): the installed .dist-info's ranges must win."""
    (tmp_path / "vonix.egg-info").mkdir()
    (tmp_path / "vonix.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: vonix\nVersion: 0.0.1\n")
    (tmp_path / "vonix.egg-info" / "requires.txt").write_text("uvicorn[standard]>=0.30\nbroadcaster>=0.3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert metadata.requires("vonix") == ["uvicorn[standard]>=0.30", "broadcaster>=0.3"]  # the shadow is real
    assert declared()["uvicorn"].specifier == Requirement(
        next(r for r in PYPROJECT["project"]["dependencies"] if r.startswith("uvicorn"))).specifier


def test_vonix_serve_refuses_to_start_on_an_untested_uvicorn(tmp_path: Path) -> None:
    """End to end: distribution metadata saying uvicorn 0.99.0 comes first on sys.path, so that is
    the version importlib.metadata reports; `vonix serve` must exit 2 with the one-line reason and
    never get as far as importing uvicorn's internals or listening."""
    dist_info = tmp_path / "uvicorn-0.99.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: uvicorn\nVersion: 0.99.0\n")
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "VONIX_ENV"}}
    # Without the check the server would stop at the database instead (closed port: exit 3, fast).
    env.update({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "DATABASE_URL": "postgresql://vonix@127.0.0.1:9/vonix",
                "DB_TIMEOUT": "2"})
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "9"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    uvicorn = declared()["uvicorn"]
    assert f"uvicorn 0.99.0 is installed; vonix requires uvicorn{uvicorn.specifier}" in result.stderr
    assert "make run" in result.stderr and "Traceback" not in result.stderr


# --- the lock files and what is declared ----------------------------------------------------------

def test_lock_files_satisfy_pyproject() -> None:
    found = load_check_lock().problems(ROOT)
    assert found == [], "\n".join(found) + "\nrun `make lock`"


def test_a_dependency_added_without_make_lock_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requirements").mkdir()
    for name in ("build.in", "build.txt", "test.txt", "runtime.txt"):
        (tmp_path / "requirements" / name).write_text((ROOT / "requirements" / name).read_text())
    text = (ROOT / "pyproject.toml").read_text()
    text = text.replace('    "pyotp>=2.9",\n', '    "pyotp>=2.9",\n    "vonix-unlocked-example>=2.0",\n', 1)
    text = text.replace('"mcstatus>=12.0"', '"mcstatus>=99"', 1)
    (tmp_path / "pyproject.toml").write_text(text)
    check_lock = load_check_lock()
    assert check_lock.main(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "requirements/test.txt does not pin vonix-unlocked-example (vonix-unlocked-example>=2.0)" in err
    assert "requirements/runtime.txt does not pin vonix-unlocked-example" in err
    assert "requirements/runtime.txt pins mcstatus==" in err and "outside mcstatus>=99" in err
    assert "run `make lock`" in err


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "server").rglob("*.py"), *(ROOT / "realtime").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return names


def test_every_runtime_dependency_is_imported_by_the_server() -> None:
    """A dependency nothing imports is not installed (the design's `broadcaster` was one).

    Modules are mapped to distributions through the files each installed distribution owns, so
    namespace packages resolve precisely (opentelemetry.sdk -> opentelemetry-sdk) and import names
    that differ from the distribution's (PIL -> pillow, argon2 -> argon2-cffi) need no table."""
    wanted = set(declared())
    owner: dict[str, str] = {}
    for name in wanted:
        try:
            files = metadata.files(name) or []
        except metadata.PackageNotFoundError:  # not installed: the range test above names it
            continue
        for file in files:
            parts = file.with_suffix("").parts
            if file.suffix in {".py", ".so", ".pyd"} and parts:
                # package/__init__.py -> package; module.py and ext.cpython-311-x86_64-linux-gnu.so -> module
                dotted = parts[:-1] if parts[-1] == "__init__" else (*parts[:-1], parts[-1].split(".")[0])
                owner.setdefault(".".join(dotted), name)
    used = set()
    for module in _imported_modules():
        names = module.split(".")
        for end in range(len(names), 0, -1):
            if ".".join(names[:end]) in owner:
                used.add(owner[".".join(names[:end])])
                break
    assert sorted(wanted - used) == [], "declared in pyproject.toml but imported nowhere in server/ or realtime/"
