"""A real `vonix serve` process, for tests that send it SIGTERM or SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "replica-test-secret-key-0123456789-abcdefghij"


class Replica:
    def __init__(self, env: dict[str, Any], port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "VONIX_ENV": "test", "SECRET_KEY": SECRET, "PYTHONPATH": str(ROOT),
                    "LOG_FORMAT": "json", **{k: str(v) for k, v in env.items()}}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Replica:
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)],
            env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited with {self.process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base_url}/api/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError("replica did not become ready")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
