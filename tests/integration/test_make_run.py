"""`make run` from a clean copy of the tree serves /api/health, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    return [line for line in listing.stdout.splitlines() if (ROOT / line).is_file()]


def test_make_run_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    checkout = tmp_path / "vonix"
    for name in _tracked_files():
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "VONIX_ENV"}}
    # Reuse the suite's virtualenv: installing from scratch is what `make test` itself just did.
    env.update({"VONIX_PORT": str(port), "VENV": str(ROOT / ".venv")})
    # A stamp newer than the copied pyproject tells make the shared venv is installed: the test must
    # never re-install the project from this temporary copy into the suite's virtualenv.
    stamp = tmp_path / "installed.stamp"
    stamp.touch()
    process = subprocess.Popen(["make", "run", f"STAMP={stamp}"], cwd=checkout, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert status == 200
        assert (checkout / "vonix.db").exists(), "the embedded SQLite database is created and migrated"
        index = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in output, output
    assert "stopped" in output, output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
