"""Refuse to serve on dependency versions outside the ranges Vonix declares and was tested with.

Why: `server/ws_protocol.py` subclasses uvicorn's websockets-sansio protocol and reaches into
websockets' handshake objects, and the broker's subscriber (`realtime/broker/subscriber.py`) reads
redis-py's connection settings and parses with hiredis directly. A release of any of them may move
those internals without notice, and what breaks then is quiet: idle-connection memory, a handshake
detail, a subscriber that stops delivering after a reconnect. pyproject.toml therefore bounds them
to the release series the suite ran on, and this module holds the installed environment to every
runtime requirement vonix declares.

The ranges are not repeated here: they are read from vonix's own installed metadata
(`importlib.metadata.requires("vonix")`, i.e. pyproject.toml's `dependencies` as installed), so
pyproject.toml stays the one place to change them. pip enforces the same ranges when it installs
vonix; this check catches an environment changed behind pip's back (`pip install -U uvicorn`,
`--no-deps`, a hand-built image).

Refuse rather than warn: `vonix serve` exits 2 with one line naming the package, the installed
version and the range, like every other start-up configuration error. A warning in a log would let
a replica run untested code paths in production; a refusal is seen at deploy time, before traffic.
The way to move a bound is deliberate: widen it in pyproject.toml, `make lock`, `make test`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

DISTRIBUTION = "vonix"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One declared requirement the environment does not meet."""

    requirement: Requirement
    installed: str | None  # None: not installed at all

    def message(self) -> str:
        name = self.requirement.name
        wanted = f"{name}{self.requirement.specifier}"
        if self.installed is None:
            return f"{name} is not installed; vonix requires {wanted}"
        return (f"{name} {self.installed} is installed; vonix requires {wanted} "
                f"(the versions its tests ran with)")


def runtime_requirements(distribution: str = DISTRIBUTION) -> list[Requirement]:
    """The runtime requirements `distribution` declares for this interpreter and platform
    (extras such as `[test]` and markers for other platforms left out).

    Raises `importlib.metadata.PackageNotFoundError` when the distribution is not installed."""
    found = []
    for line in _installed_distribution(distribution).requires or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:  # never from a wheel pip built; nothing to hold the env to
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.append(requirement)
    return found


def _installed_distribution(name: str) -> metadata.Distribution:
    """The distribution an installer put in place, in preference to whichever comes first on
    sys.path: a source tree's leftover `vonix.egg-info` (a by-product of building there) shadows the
    installed metadata when the tree is the working directory, and its ranges may be stale. An
    installer (pip, uv) leaves an INSTALLER file; a build by-product has none."""
    found = list(metadata.distributions(name=name))
    if not found:
        raise metadata.PackageNotFoundError(name)
    return next((dist for dist in found if dist.read_text("INSTALLER") is not None), found[0])


def check(requirement: Requirement, installed: str | None) -> Mismatch | None:
    """Compare one installed version (a string, as metadata gives it) with one requirement.

    Pre-releases inside the range pass (a patched build of a tested series is the point of a
    range); an unparseable version fails, since it cannot be shown to be inside."""
    if installed is None:
        return Mismatch(requirement, None)
    try:
        version = Version(installed)
    except InvalidVersion:
        return Mismatch(requirement, installed)
    if requirement.specifier.contains(version, prereleases=True):
        return None
    return Mismatch(requirement, installed)


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(
    requirements: Iterable[Requirement] | None = None,
    installed_version: Callable[[str], str | None] = _installed_version,
) -> list[Mismatch]:
    """Every declared runtime requirement the environment fails (empty when all are met)."""
    if requirements is None:
        requirements = runtime_requirements()
    found = []
    for requirement in requirements:
        mismatch = check(requirement, installed_version(requirement.name))
        if mismatch is not None:
            found.append(mismatch)
    return found


def startup_problem() -> str | None:
    """One line for `vonix serve` to refuse start-up with, or None when the environment is fine.

    None too when vonix itself has no installed metadata (sources on sys.path without any
    install): there is no declared range to hold the environment to."""
    try:
        found = mismatches()
    except metadata.PackageNotFoundError:
        return None
    if not found:
        return None
    return ("dependency versions outside the tested ranges: " + "; ".join(m.message() for m in found)
            + ". Install from the lock (`make run`, or pip install --require-hashes -r "
              "requirements/runtime.txt), or widen the bound in pyproject.toml after `make test` passes.")
