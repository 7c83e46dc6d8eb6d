"""Throwaway Redis and PostgreSQL servers on free loopback ports, in temporary directories.

Real servers, never fakes: tests stop and restart them under a running app to prove the app
degrades and recovers. PostgreSQL refuses to run as root, so as root it runs as `postgres`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Ports for the servers tests start come from a block of their own per test process, outside the
# kernel's ephemeral range. Why not port 0 (the kernel's pick): a test that stops a server and
# starts it again on its port (an outage, a restart) needs that port to stay free meanwhile, and
# with several workers any outgoing connection or `bind(0)` of another process could take a port
# the kernel had just handed out. Nothing takes a port of this block but this process, which
# hands each one out once per turn of the block.
_BLOCKS = 8
_next_port: dict[str, int] = {}


def _port_block() -> range:
    try:
        low, high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    start, end = (10000, low) if low - 10000 >= 8000 else (high + 1, 65536)
    size = (end - start) // (_BLOCKS + 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw3"; "" outside xdist
    index = int(worker[2:]) % _BLOCKS + 1 if worker[2:].isdigit() else 0
    return range(start + index * size, start + (index + 1) * size)


def free_port() -> int:
    block = _port_block()
    key = f"{block.start}"
    candidate = _next_port.get(key, block.start + os.getpid() % len(block))
    for _ in range(len(block)):
        port = block.start + (candidate - block.start) % len(block)
        candidate = port + 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _next_port[key] = candidate
        return port
    raise RuntimeError(f"no free port in {block}")


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="vonix-redis-"))
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        subprocess.run(
            [
                self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.dir),
                "--pidfile", str(self.dir / "redis.pid"), "--logfile", str(self.dir / "redis.log"),
            ],
            check=True,
        )
        wait_port(self.port)
        return self

    def pid(self, timeout: float = 10.0) -> int:
        """The daemon's pid. redis-server creates its pidfile and writes the number in two steps, so
        a reader on a busy machine can find the file still empty."""
        pidfile = self.dir / "redis.pid"
        deadline = time.monotonic() + timeout
        while True:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text.isdigit():
                return int(text)
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server wrote no pid to {pidfile} in {timeout:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut the server down, by SIGKILL if it will not go: a server left running outlives the
        test run (seen once: a cluster node still serving from a deleted directory after CI)."""
        # NOW: a master does not wait (up to 10 s) for lagging replicas first.
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([self.cli, "-p", str(self.port), "shutdown", "nosave", "now"],
                           capture_output=True, check=False, timeout=10)
        if not self._listening(10):
            return
        self._sigkill()
        self._listening(5)

    def _listening(self, seconds: float) -> bool:
        """Whether the port still takes connections after waiting up to `seconds` for it to close."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            time.sleep(0.05)
        return True

    def _sigkill(self) -> None:
        pidfile = self.dir / "redis.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), 9)

    def kill(self) -> None:
        self._sigkill()
        self.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parent.parent.name))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL binaries not found; `make test` installs them with apt-get")


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="vonix-pg-"))
        self.data = self.dir / "data"
        self.bin = postgres_bin()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        return self

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            "-c shared_buffers=64MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o", options, "start")
        wait_port(self.port)
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                           "-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql)
        return result.stdout.strip()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
