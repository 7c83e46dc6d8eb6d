"""Do the lock files still satisfy pyproject.toml? Exit 1 naming what to do (`make lock`) if not.

Why: the installs (`make run`, `make test`, the Dockerfile) take exact versions from
requirements/*.txt and install the project itself with --no-deps, so a dependency added to
pyproject.toml without re-locking would be silently missing until an import fails somewhere in
the suite. `make test` runs this right after installing, and tests/unit/test_dependency_bounds.py
runs it on the committed files. Offline and fast: it reads files only.

Usage: python scripts/check_lock.py [--root DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, str]:
    """{canonical name: version} of a `name==version \\ --hash=...` file."""
    found: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    return found


def requirements(root: Path) -> tuple[list[Requirement], list[Requirement], list[Requirement]]:
    """(runtime, test extra, build inputs) as pyproject.toml and requirements/build.in declare them."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    runtime = [Requirement(r) for r in project.get("dependencies", [])]
    test = [Requirement(r) for r in project.get("optional-dependencies", {}).get("test", [])]
    build_lines = (root / "requirements" / "build.in").read_text().splitlines()
    build = [Requirement(line.split("#", 1)[0]) for line in build_lines if line.split("#", 1)[0].strip()]
    return runtime, test, build


def problems(root: Path) -> list[str]:
    """Every way the lock files fail pyproject.toml, one readable line each (empty: all good)."""
    runtime, test, build = requirements(root)
    locks = root / "requirements"
    wanted = {"runtime.txt": runtime + build, "test.txt": runtime + test + build, "build.txt": build}
    found: list[str] = []
    pinned_by_file: dict[str, dict[str, str]] = {}
    for name, reqs in wanted.items():
        path = locks / name
        if not path.is_file():
            found.append(f"requirements/{name} is missing")
            continue
        pinned = pinned_by_file[name] = pins(path)
        for req in reqs:
            if req.marker is not None and not req.marker.evaluate({"extra": "test"}):
                continue  # for another platform or Python than the lock's (Linux, 3.11)
            version = pinned.get(canonicalize_name(req.name))
            if version is None:
                found.append(f"requirements/{name} does not pin {req.name} ({req})")
            elif not req.specifier.contains(version, prereleases=True):
                found.append(f"requirements/{name} pins {req.name}=={version}, outside {req}")
    full = pinned_by_file.get("test.txt", {})
    for name in ("runtime.txt", "build.txt"):
        for package, version in pinned_by_file.get(name, {}).items():
            if package in full and full[package] != version:
                found.append(f"requirements/{name} pins {package}=={version}, test.txt {full[package]}: "
                             "the image would run another version than `make test` tested")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    found = problems(args.root)
    for line in found:
        print(f"check_lock: {line}", file=sys.stderr)
    if found:
        print("check_lock: the lock files are out of date with pyproject.toml: run `make lock`, "
              "then commit requirements/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
