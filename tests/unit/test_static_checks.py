"""ruff and mypy run with the tests, so `make test` (what CI runs) fails on a lint or type error,
not only `make lint` when someone remembers it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_finds_nothing() -> None:
    result = _run(str(BIN / "ruff"), "check", "--quiet", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_realtime_and_server() -> None:
    result = _run(sys.executable, "-m", "mypy", "realtime", "server")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout
