"""Fan-out benchmark (issue 5): real servers, real sockets, the reference measured in the same run.

Servers under test (each bound to 127.0.0.1 and pinned to core 0 with `taskset`, as are Redis and
PostgreSQL; the load generator is pinned to core 1):
- `vonix serve` subprocesses: embedded mode (SQLite, in-process broker) for one replica, scaled
  mode (PostgreSQL + Redis) for two replicas;
- `bench/reference_server.py`: a minimal server on the `websockets` library (one Redis
  subscription, `websockets.broadcast` of the frame encoded once), plain and coalescing 2 ms.

Scenarios (`BENCH_SCENARIOS=fanout,replicas,rooms,idle`):
- fanout:   1 replica x BENCH_SUBSCRIBERS (2,000) clients on one channel. A closed-loop publisher
            keeps BENCH_WINDOW messages in flight (published, not yet received by every client):
            deliveries/s at saturation. Then a fixed rate (half the plain reference's saturation
            rate, the same offered load for every server) for publish-to-receive latency.
- replicas: the same across 2 replicas through Redis (clients split evenly, publisher on one).
- rooms:    BENCH_ROOM_CLIENTS (2,000) clients in rooms of BENCH_ROOM_SIZE (10), each publishing
            1 message/s in its room. Vonix rooms are `room:` channels: persisted (a database
            insert per message); the reference stores nothing.
- idle:     BENCH_IDLE (10,000) connections, token on the upgrade, each subscribed: connections/s
            and server RSS growth per connection.

The load generator (`bench/loadgen.js`, Node + `ws`, installed into bench/node_modules on first
run) counts message lines and reads one sequence number per frame; only sampled clients read
timestamps. Its CPU and the server's (user+sys from /proc/<pid>/stat) are measured over the same
window and a warning row is printed if the generator used more than the server.

Knobs (environment): BENCH_SUBSCRIBERS, BENCH_SECONDS (measured seconds per run, 5),
BENCH_WINDOW (16), BENCH_IDLE, BENCH_ROOM_CLIENTS, BENCH_ROOM_SIZE, BENCH_SCENARIOS,
BENCH_LATENCY_RATE (deliveries/s of the latency runs; default half the reference's),
BENCH_JSON (write raw results to this file). Run: `make bench` or `python -m bench fanout`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.reference_server import make_token
from bench.table import print_table
from tests.support.services import PostgresServer, RedisServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SERVER_CORE, LOADGEN_CORE = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
REF_SECRET = "reference-bench-secret"
PASSWORD = "correct horse battery staple 42"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Config:
    subscribers: int = field(default_factory=lambda: _env_int("BENCH_SUBSCRIBERS", 2000))
    seconds: float = field(default_factory=lambda: float(os.environ.get("BENCH_SECONDS", 5)))
    window: int = field(default_factory=lambda: _env_int("BENCH_WINDOW", 16))
    idle: int = field(default_factory=lambda: _env_int("BENCH_IDLE", 10000))
    room_clients: int = field(default_factory=lambda: _env_int("BENCH_ROOM_CLIENTS", 2000))
    room_size: int = field(default_factory=lambda: _env_int("BENCH_ROOM_SIZE", 10))
    latency_rate: float | None = field(
        default_factory=lambda: float(os.environ["BENCH_LATENCY_RATE"]) if os.environ.get("BENCH_LATENCY_RATE")
        else None)
    scenarios: list[str] = field(default_factory=lambda: [
        s.strip() for s in os.environ.get("BENCH_SCENARIOS", "fanout,replicas,rooms,idle").split(",") if s.strip()])
    users: int = 10
    sample_every: int = 40
    concurrency: int = 100

    @property
    def warmup(self) -> float:
        return min(1.0, max(0.3, self.seconds / 5))


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


# --- processes, pinning, /proc ----------------------------------------------------------------

TASKSET = shutil.which("taskset")


def pinned(command: list[str], core: int) -> list[str]:
    return [TASKSET, "-c", str(core), *command] if TASKSET else command


def pin_pid(pid: int, core: int) -> None:
    if TASKSET:
        subprocess.run([TASKSET, "-a", "-p", "-c", str(core), str(pid)], capture_output=True, check=False)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class LoadGen:
    """The Node load generator, pinned to core 1, driven by JSON lines."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(pinned(["node", str(BENCH / "loadgen.js")], LOADGEN_CORE), cwd=BENCH,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def call(self, timeout: float = 300, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise RuntimeError("the load generator exited")
        answer = json.loads(line)
        if not answer["ok"]:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer["result"]  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(timeout=10, cmd="exit")
        with contextlib.suppress(Exception):
            self.process.wait(5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def ensure_node() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("bench_fanout needs Node.js 18+ and npm (Debian: apt-get install nodejs npm)")
    if not (BENCH / "node_modules" / "ws").is_dir():
        progress("installing the load generator's npm packages into bench/node_modules")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH, check=True)


# --- servers ----------------------------------------------------------------------------------

class Server:
    """A pinned server subprocess with its log in the run's temporary directory."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path, port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}-{port}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(pinned(command, SERVER_CORE), env=env, cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid  # taskset execs the command: same pid

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}:\n"
                               + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def start_reference(redis: RedisServer, log_dir: Path, coalesce_ms: float = 0.0) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.reference_server", "--port", str(port), "--redis", redis.url,
               "--secret", REF_SECRET, "--coalesce-ms", str(coalesce_ms)]
    server = Server("reference", command, {**os.environ, "PYTHONPATH": str(ROOT)}, log_dir, port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        server.check()
        with contextlib.suppress(TimeoutError):
            wait_port(port, timeout=0.2)
            return server
    raise TimeoutError("the reference server did not start")


def vonix_env(database_url: str, redis_url: str | None, replicas: int = 1) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VONIX_ENV": "development", "SECRET_KEY": SECRET,
           "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "console",
           "MAINTENANCE_ENABLED": "false", "VONIX_REPLICAS": str(replicas),
           "WS_MAX_CONNECTIONS_PER_USER": "100000", "WS_PUBLISH_RATE": "1000000", "WS_PUBLISH_BURST": "1000000"}
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def vonix_cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"vonix {' '.join(args)} failed: {result.stdout}\n{result.stderr}")
    return result.stdout


def start_vonix(env: dict[str, str], log_dir: Path) -> Server:
    port = free_port()
    server = Server("vonix", [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
                    {**env, "MIGRATE_ON_START": "false"}, log_dir, port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        server.check()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=1).status_code == 200:
                return server
        time.sleep(0.1)
    raise TimeoutError("vonix did not become ready")


@dataclass
class VonixDeployment:
    servers: list[Server]
    bot_token: str
    user_tokens: list[str]
    db_pids: list[int] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{s.port}/ws" for s in self.servers]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.servers[0].port}"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def prepare_vonix_database(env: dict[str, str]) -> str:
    """Migrate, create the publishing bot (`bot:bench` is its channel); returns the bot token."""
    vonix_cli(env, "migrate")
    out = vonix_cli(env, "create-bot", "bench", "--scopes", "publish,subscribe")
    match = re.search(r"token \(shown once, store it now\): (\S+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the bot token from: {out}")
    return match.group(1)


def vonix_users(base_url: str, count: int) -> list[str]:
    """Register `count` users through the HTTP API and log each in once (argon2: slow-ish)."""
    tokens = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for i in range(count):
            name = f"bench{i:03d}"
            response = client.post("/api/auth/register", json={
                "username": name, "email": f"{name}@example.com", "password": PASSWORD})
            if response.status_code not in (201, 409):
                raise RuntimeError(f"register {name}: {response.status_code} {response.text}")
            response = client.post("/api/auth/login", json={"login": name, "password": PASSWORD})
            if response.status_code != 200:
                raise RuntimeError(f"login {name}: {response.status_code} {response.text}")
            tokens.append(response.json()["access_token"])
    return tokens


def create_rooms(base_url: str, token: str, names: list[str]) -> None:
    with httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        for name in names:
            response = client.post("/api/rooms", json={"name": name})
            if response.status_code not in (201, 409):
                raise RuntimeError(f"create room {name}: {response.status_code} {response.text}")


class Stack:
    """Redis (shared by every scenario) and, on demand, PostgreSQL; all pinned to the server core."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vonix-bench-"))
        self.redis = RedisServer().start()
        pidfile = self.redis.dir / "redis.pid"
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.redis_pid = int(pidfile.read_text().strip())
        pin_pid(self.redis_pid, SERVER_CORE)
        self.postgres: PostgresServer | None = None
        self._databases = 0

    def flush_redis(self) -> None:
        subprocess.run([self.redis.cli, "-p", str(self.redis.port), "flushall"], capture_output=True, check=False)

    def postgres_url(self) -> str:
        if self.postgres is None:
            self.postgres = PostgresServer().init().start()
            pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
            for each in (pid, *children(pid)):
                pin_pid(each, SERVER_CORE)
        self._databases += 1
        name = f"bench_{self._databases}"
        self.postgres.psql(f"CREATE DATABASE {name}")
        return self.postgres.url(name)

    def postgres_pids(self) -> list[int]:
        if self.postgres is None:
            return []
        pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        return [pid, *children(pid)]

    def vonix(self, replicas: int) -> VonixDeployment:
        if replicas == 1:
            database = f"sqlite:///{self.dir / f'vonix-{time.monotonic_ns()}.db'}"
            env = vonix_env(database, None)
        else:
            self.flush_redis()
            env = vonix_env(self.postgres_url(), self.redis.url, replicas)
        bot = prepare_vonix_database(env)
        servers = [start_vonix(env, self.dir) for _ in range(replicas)]
        deployment = VonixDeployment(servers, bot, [])
        try:
            deployment.user_tokens = vonix_users(deployment.base_url, 10)
        except Exception:
            deployment.stop()
            raise
        deployment.db_pids = self.postgres_pids() if replicas > 1 else []
        return deployment

    def cleanup(self) -> None:
        self.redis.cleanup()
        if self.postgres is not None:
            self.postgres.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- measurements -----------------------------------------------------------------------------

def cpu_seconds(ticks: dict[str, int]) -> dict[str, float]:
    return {name: value / CLK_TCK for name, value in ticks.items()}


def ref_tokens(count: int) -> list[str]:
    return [make_token(REF_SECRET, i + 1) for i in range(count)]


@dataclass
class Row:
    scenario: str
    server: str
    result: dict[str, Any]
    latency: dict[str, Any] | None = None
    note: str = ""


def run_fanout(lg: LoadGen, urls: list[str], sub_tokens: list[str], pub_token: str, pids: dict[str, list[int]],
               cfg: Config, seq_key: str, latency_rate: float | None) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Saturate (closed loop), then a fixed rate (deliveries/s; None: half this saturation rate)."""
    connected = lg.call(cmd="connect", urls=urls, tokens=sub_tokens, channels=["bot:bench"], n=cfg.subscribers,
                        concurrency=cfg.concurrency, sample_every=cfg.sample_every, seq_key=seq_key)
    if connected["failed"]:
        raise RuntimeError(f"{connected['failed']} subscribers failed to connect: {connected['errors']}")
    saturated = lg.call(cmd="fanout", url=urls[0], token=pub_token, channel="bot:bench", window=cfg.window,
                        rate=None, warmup=cfg.warmup, seconds=cfg.seconds, pids=pids)
    rate = latency_rate if latency_rate is not None else saturated["deliveries_per_s"] / 2
    fixed = lg.call(cmd="fanout", url=urls[0], token=pub_token, channel="bot:bench", rate=rate / cfg.subscribers,
                    warmup=cfg.warmup, seconds=max(1.0, cfg.seconds / 2), pids=pids)
    lg.call(cmd="close")
    return saturated, fixed, rate


def fanout_scenario(stack: Stack, lg: LoadGen, cfg: Config, replicas: int, rows: list[Row]) -> None:
    scenario = f"{replicas} replica{'s' if replicas > 1 else ''} x {cfg.subscribers:,} subs" + (
        " via Redis" if replicas > 1 else "")
    redis_pids = {"redis": [stack.redis_pid]}
    latency_rate = cfg.latency_rate
    for name, coalesce in (("reference", 0.0), ("reference, coalesce 2 ms", 2.0)):
        progress(f"{scenario}: {name}")
        servers = [start_reference(stack.redis, stack.dir, coalesce) for _ in range(replicas)]
        try:
            saturated, fixed, latency_rate = run_fanout(
                lg, [f"ws://127.0.0.1:{s.port}/" for s in servers], ref_tokens(cfg.users),
                make_token(REF_SECRET, 999), {"server": [s.pid for s in servers], **redis_pids}, cfg, "seq",
                latency_rate)
        finally:
            for s in servers:
                s.stop()
        rows.append(Row(scenario, name, saturated, fixed))
    progress(f"{scenario}: vonix")
    deployment = stack.vonix(replicas)
    try:
        pids = {"server": [s.pid for s in deployment.servers]}
        if replicas > 1:
            pids.update(redis_pids)
            pids["db"] = deployment.db_pids
        saturated, fixed, _ = run_fanout(lg, deployment.urls, deployment.user_tokens, deployment.bot_token, pids,
                                         cfg, "offset", latency_rate)
    finally:
        deployment.stop()
    rows.append(Row(scenario, "vonix", saturated, fixed, note="embedded" if replicas == 1 else "scaled: PG + Redis"))


def main() -> int:
    cfg = Config()
    ensure_node()
    if TASKSET is None:
        print("warning: taskset not found (util-linux): servers and load generator are not pinned", flush=True)
    stack = Stack()
    lg = LoadGen()
    rows: list[Row] = []
    try:
        if "fanout" in cfg.scenarios:
            fanout_scenario(stack, lg, cfg, 1, rows)
    finally:
        lg.close()
        stack.cleanup()
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    for row in rows:
        r, f = row.result, row.latency or {}
        print(f"{row.scenario:28} {row.server:26} sat {r['deliveries_per_s']:>9,.0f}/s p50 {r['latency_ms']['p50']:.1f} "
              f"cpu {r['cpu_ticks']} lost {r['lost']} | fixed {f.get('deliveries_per_s', 0):,.0f}/s "
              f"p50 {f.get('latency_ms', {}).get('p50', 0):.2f} p99 {f.get('latency_ms', {}).get('p99', 0):.2f} "
              f"cpu {f.get('cpu_ticks')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
