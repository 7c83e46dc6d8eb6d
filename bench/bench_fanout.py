"""Fan-out benchmark (issue 5): real servers, real sockets, the reference measured in the same run.

Servers under test, each bound to 127.0.0.1 and pinned to core 0 with `taskset` (as are Redis and
PostgreSQL); the load generator is pinned to core 1:
- `vonix serve` subprocesses: embedded mode (SQLite, in-process broker) for one replica, scaled
  mode (PostgreSQL + Redis) for two replicas and for the rooms;
- `bench/reference_server.py`: a minimal server on the `websockets` library (one Redis
  subscription, `websockets.broadcast` of the frame encoded once), plain and coalescing 2 ms.

Scenarios (`BENCH_SCENARIOS=persisted,fanout,replicas,pipelined,rooms,idle,subscribe`):
- persisted: the fan-out below on `room:general`, a stored channel (PostgreSQL + Redis, every
            message stored before it is delivered): 1 and 2 replicas, 1 and 4 publishing connections.
- fanout:   1 replica x BENCH_SUBSCRIBERS (2,000) clients on one `bot:` channel (ephemeral).
            BENCH_PUBLISHERS (4) connections of one bot publish in turn, closed loop: at most
            BENCH_WINDOW (16) messages in flight (published, not yet received by every client),
            which gives deliveries/s at saturation. Then BENCH_LATENCY_RATE (25) messages/s, the
            same offered load for every server, for publish-to-receive latency.
- replicas: the same across 2 replicas through Redis (clients and publishers split evenly).
- pipelined: one connection keeps 50 publishes in flight to `room:general` (persisted, PostgreSQL +
            Redis), with 10 and with 200 subscribers: acknowledged messages/s and deliveries/s.
- rooms:    BENCH_ROOM_CLIENTS (2,000) clients in rooms of BENCH_ROOM_SIZE (10), each publishing
            BENCH_ROOM_RATE (1) message/s in its room. Vonix rooms are `room:` channels:
            persisted (every message stored in PostgreSQL, group-committed; BENCH_ROOMS_MODE=embedded
            for SQLite); the reference stores nothing. When Vonix is overloaded a second row measures it at a
            tenth of the load, to show what a room message costs.
- idle:     BENCH_IDLE (10,000) connections, token on the upgrade, each subscribed to `bot:idle`:
            connections/s and server RSS growth per connection.
- subscribe: the same number of connections, each subscribing to one of 100 `room:` channels
            (PostgreSQL + Redis) with 100 users: what members do after a deploy.

Vonix clients are BENCH_USERS (10) users registered through the HTTP API (each token used by many
connections; WS_MAX_CONNECTIONS_PER_USER raised), the publisher is a bot (`vonix create-bot`).
WS_PUBLISH_RATE/BURST are raised and the HTTP rate limits are off: the bench measures fan-out,
not the abuse limits. Everything else is the default configuration (WS_COALESCE_MS=2).

The load generator (`bench/loadgen.js`, Node.js, no npm packages) counts message lines and reads
one sequence number per frame; only sampled clients read timestamps. Its CPU and the servers'
(user+sys from /proc/<pid>/stat) are measured over the same window; a warning row is printed if
the generator used more than the server. The machine may be shared: a run during which other
processes took more than 15% of a core is repeated (BENCH_RETRIES, 1) and the load is shown.

Other knobs: BENCH_SERVERS (reference,coalesce,vonix), BENCH_JSON (write the raw results to this
file), BENCH_KEEP (keep the server logs). Run: `make bench` or `python -m bench fanout`.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import resubscribe as resubscribe_cost
from bench.reference_server import make_token
from bench.table import print_table, print_targets
from tests.support.services import PostgresServer, RedisServer, free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SERVER_CORE, LOADGEN_CORE = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"
REF_SECRET = "reference-bench-secret"
PASSWORD = "correct horse battery staple 42"
OTHER_LOAD_RETRY = 0.15  # share of a core used by other processes that makes a run repeat (BENCH_RETRIES)
REFERENCE, COALESCE, VONIX = "reference", "reference, coalesce 2 ms", "vonix"
SHORT = {REFERENCE: "reference", COALESCE: "coalesce", VONIX: "vonix"}  # BENCH_SERVERS names


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _list(name: str, default: str) -> list[str]:
    return [s.strip() for s in (os.environ.get(name) or default).split(",") if s.strip()]


@dataclass
class Config:
    subscribers: int = field(default_factory=lambda: int(_env("BENCH_SUBSCRIBERS", 2000)))
    seconds: float = field(default_factory=lambda: _env("BENCH_SECONDS", 5))
    window: int = field(default_factory=lambda: int(_env("BENCH_WINDOW", 16)))
    publishers: int = field(default_factory=lambda: int(_env("BENCH_PUBLISHERS", 4)))
    latency_rate: float = field(default_factory=lambda: _env("BENCH_LATENCY_RATE", 25))
    idle: int = field(default_factory=lambda: int(_env("BENCH_IDLE", 10000)))
    room_clients: int = field(default_factory=lambda: int(_env("BENCH_ROOM_CLIENTS", 2000)))
    room_size: int = field(default_factory=lambda: int(_env("BENCH_ROOM_SIZE", 10)))
    room_rate: float = field(default_factory=lambda: _env("BENCH_ROOM_RATE", 1))
    rooms_scaled: bool = field(default_factory=lambda: os.environ.get("BENCH_ROOMS_MODE", "scaled") == "scaled")
    scenarios: list[str] = field(default_factory=lambda: _list("BENCH_SCENARIOS",
                                                               "persisted,fanout,replicas,pipelined,rooms,idle,subscribe"))
    servers: list[str] = field(default_factory=lambda: _list("BENCH_SERVERS", "reference,coalesce,vonix"))
    users: int = field(default_factory=lambda: int(_env("BENCH_USERS", 10)))
    subscribe_users: int = field(default_factory=lambda: int(_env("BENCH_SUBSCRIBE_USERS", 100)))
    resubscribe_rounds: int = field(default_factory=lambda: int(_env("BENCH_RESUBSCRIBE_ROUNDS", 200)))
    retries: int = field(default_factory=lambda: int(_env("BENCH_RETRIES", 1)))
    sample_every: int = 41  # prime: the sampled clients spread over replicas and rooms
    concurrency: int = 100

    @property
    def warmup(self) -> float:
        return min(1.0, max(0.3, self.seconds / 5))


_STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"  .. {time.monotonic() - _STARTED:5.1f} s  {message}", file=sys.stderr, flush=True)


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
        node = ["node", *os.environ.get("BENCH_NODE_OPTIONS", "").split(), str(BENCH / "loadgen.js")]
        self.process = subprocess.Popen(pinned(node, LOADGEN_CORE), cwd=BENCH,
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


def check_node() -> None:
    """The load generator needs Node.js 18+; install Debian's `nodejs` when it is missing."""
    if shutil.which("node") is None and shutil.which("apt-get"):
        progress("installing nodejs (the load generator runs on Node.js)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "nodejs"],
                       check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    node = shutil.which("node")
    version = subprocess.run([node], input="console.log(process.version)", capture_output=True, text=True,
                             check=False).stdout.strip() if node else ""
    if not re.match(r"v(1[89]|[2-9]\d)\.", version):
        raise SystemExit(f"bench_fanout needs Node.js 18+ for its load generator, found {version or 'none'}")


# --- servers ----------------------------------------------------------------------------------

class Server:
    """A pinned server subprocess with its log in the run's temporary directory."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path, port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}-{port}.log"
        self._log = open(self.log_path, "ab")
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


def start_reference(redis_url: str, log_dir: Path, coalesce_ms: float = 0.0) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.reference_server", "--port", str(port), "--redis", redis_url,
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
           "MAINTENANCE_ENABLED": "false", "VONIX_REPLICAS": str(replicas), "RATE_LIMIT_ENABLED": "false",
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
class Deployment:
    """Servers of one kind under test, the tokens their clients use and what CPU to account."""

    servers: list[Server]
    path: str
    publisher_token: str
    tokens: list[str]
    seq_key: str
    extra_pids: Callable[[], dict[str, list[int]]] = dict  # Redis, PostgreSQL (backends come and go)

    @property
    def urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{s.port}{self.path}" for s in self.servers]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.servers[0].port}"

    def pids(self) -> dict[str, list[int]]:
        return {"server": [s.pid for s in self.servers], **self.extra_pids()}

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

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dir = Path(tempfile.mkdtemp(prefix="vonix-bench-"))
        self.redis = RedisServer().start()
        self.redis_pid = self.redis.pid()
        pin_pid(self.redis_pid, SERVER_CORE)
        self.postgres: PostgresServer | None = None
        self._databases = 0
        self._bots: dict[str, str] = {}

    def flush_redis(self) -> None:
        subprocess.run([self.redis.cli, "-p", str(self.redis.port), "flushall"], capture_output=True, check=False)

    def _postgres(self) -> PostgresServer:
        if self.postgres is None:
            self.postgres = PostgresServer().init().start()
            pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
            for each in (pid, *children(pid)):
                pin_pid(each, SERVER_CORE)  # backends fork from it later: same core
        return self.postgres

    def database(self, scaled: bool) -> tuple[str, str]:
        """A fresh, migrated database holding the publishing bot, and the bot's token: copied from
        a template made once per kind (migrating takes longer than copying)."""
        self._databases += 1
        if not scaled:
            template = self.dir / "template.db"
            if "sqlite" not in self._bots:
                self._bots["sqlite"] = prepare_vonix_database(vonix_env(f"sqlite:///{template}", None))
            target = self.dir / f"vonix-{self._databases}.db"
            shutil.copyfile(template, target)
            return f"sqlite:///{target}", self._bots["sqlite"]
        postgres = self._postgres()
        if "postgres" not in self._bots:
            postgres.psql("CREATE DATABASE bench_template")
            self._bots["postgres"] = prepare_vonix_database(vonix_env(postgres.url("bench_template"), None))
        name = f"bench_{self._databases}"
        postgres.psql(f"CREATE DATABASE {name} TEMPLATE bench_template")
        return postgres.url(name), self._bots["postgres"]

    def postgres_pids(self) -> list[int]:
        if self.postgres is None:
            return []
        pid = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        return [pid, *children(pid)]

    def reference(self, replicas: int, coalesce_ms: float, users: int | None = None) -> Deployment:
        self.flush_redis()
        servers = [start_reference(self.redis.url, self.dir, coalesce_ms) for _ in range(replicas)]
        return Deployment(servers, "/", make_token(REF_SECRET, 999),
                          [make_token(REF_SECRET, i + 1) for i in range(users or self.cfg.users)], "seq",
                          lambda: {"redis": [self.redis_pid]})

    def vonix(self, replicas: int, scaled: bool = False, users: int | None = None) -> Deployment:
        scaled = scaled or replicas > 1
        database, bot = self.database(scaled)
        if scaled:
            self.flush_redis()
        env = vonix_env(database, self.redis.url if scaled else None, replicas)
        servers: list[Server] = []
        try:
            servers.extend(start_vonix(env, self.dir) for _ in range(replicas))
            deployment = Deployment(servers, "/ws", bot, [], "offset")
            deployment.tokens = vonix_users(deployment.base_url, users or self.cfg.users)
        except Exception:
            for server in servers:
                server.stop()
            raise
        if scaled:
            deployment.extra_pids = lambda: {"redis": [self.redis_pid], "db": self.postgres_pids()}
        return deployment

    def deploy(self, kind: str, replicas: int, scaled: bool = False, users: int | None = None) -> Deployment:
        if kind == VONIX:
            return self.vonix(replicas, scaled, users)
        return self.reference(replicas, 2.0 if kind == COALESCE else 0.0, users)

    def cleanup(self) -> None:
        self.redis.cleanup()
        if self.postgres is not None:
            self.postgres.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- measurements -----------------------------------------------------------------------------

@dataclass
class Run:
    """One measured window, as the load generator reported it."""

    raw: dict[str, Any]

    @property
    def rate(self) -> float:
        return float(self.raw["deliveries_per_s"])

    @property
    def seconds(self) -> float:
        return float(self.raw["window_seconds"])

    def cpu(self, name: str) -> float:
        """CPU seconds used by a process group during the window."""
        return float(self.raw["cpu_ticks"].get(name, 0)) / CLK_TCK

    @property
    def server_cpu(self) -> float:
        return self.cpu("server")

    @property
    def loadgen_cpu(self) -> float:
        return self.cpu("loadgen")

    @property
    def deliveries(self) -> float:
        return self.rate * self.seconds

    @property
    def per_core_second(self) -> float:
        """Deliveries per second of server CPU: capacity of one core, robust to a busy machine."""
        return self.deliveries / self.server_cpu if self.server_cpu else 0.0

    @property
    def us_per_delivery(self) -> float:
        return 1e6 * self.server_cpu / self.deliveries if self.deliveries else 0.0

    @property
    def other_load(self) -> float:
        """Share of a core taken by other processes (the machine is shared), worst core."""
        ticks = self.raw["cpu_ticks"]
        ours = {SERVER_CORE: sum(ticks.get(k, 0) for k in ("server", "redis", "db")), LOADGEN_CORE: ticks["loadgen"]}
        worst = 0.0
        for core, own in ours.items():
            total = ticks.get(f"core{core}_total", 0)
            if total:
                busy = ticks[f"core{core}_busy"] - ticks[f"core{core}_softirq"]
                worst = max(worst, (busy - own) / total)
        return max(0.0, worst)

    def latency(self, which: str) -> float | None:
        value = self.raw["latency_ms"].get(which)
        return None if value is None else float(value)

    @property
    def lost(self) -> int:
        """Messages not received by a client within the drain window (10 s) after the run."""
        return int(self.raw["lost"])

    @property
    def disorder(self) -> int:
        """Frames whose first message did not follow the previous frame's last (gap or reorder)."""
        return int(self.raw.get("order_errors", 0))

    @property
    def expected(self) -> int:
        return int(self.raw["expected"])


def measure(call: Callable[[], dict[str, Any]], label: str, retries: int) -> Run:
    """Run; when other processes took a big share of a core meanwhile, again (up to `retries`
    times), keeping the least disturbed run."""
    best = Run(call())
    for _ in range(retries):
        if best.other_load <= OTHER_LOAD_RETRY:
            break
        progress(f"{label}: other processes used {best.other_load:.0%} of a core; measuring again")
        again = Run(call())
        if again.other_load < best.other_load:
            best = again
    return best


@dataclass
class FanoutResult:
    scenario: str
    server: str
    saturated: Run
    fixed: Run
    note: str = ""
    subscribers: int = 0
    channel: str = "bot:bench"


@dataclass
class RoomsResult:
    server: str
    run: Run
    note: str = ""


@dataclass
class IdleResult:
    server: str
    connections: int
    failed: int
    seconds: float
    rss_before_kib: int
    rss_after_kib: int
    loadgen_cpu: float
    server_cpu: float
    scenario: str = ""
    backend_cpu: float = 0.0  # Redis + PostgreSQL
    note: str = ""

    @property
    def rate(self) -> float:
        return self.connections / self.seconds if self.seconds else 0.0

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connections if self.connections else 0.0


def connect(lg: LoadGen, deployment: Deployment, cfg: Config, n: int, channels: list[str],
            group: int) -> dict[str, Any]:
    result = lg.call(cmd="connect", urls=deployment.urls, tokens=deployment.tokens, channels=channels, group=group,
                     n=n, concurrency=cfg.concurrency, sample_every=cfg.sample_every, seq_key=deployment.seq_key)
    if result["failed"]:
        raise RuntimeError(f"{result['failed']} of {n} clients failed to connect: {result['errors']}")
    return result


def fanout_scenario(stack: Stack, lg: LoadGen, cfg: Config, replicas: int, *, channel: str = "bot:bench",
                    subscribers: int | None = None, publishers: int | None = None, window: int | None = None,
                    scenario: str | None = None, scaled: bool = False,
                    kinds: tuple[str, ...] = (REFERENCE, COALESCE, VONIX)) -> list[FanoutResult]:
    subscribers = subscribers or cfg.subscribers
    publishers = publishers or cfg.publishers
    scenario = scenario or f"{replicas} replica{'s' if replicas > 1 else ''} x {subscribers:,} subs" + (
        " via Redis" if replicas > 1 else "")
    results = []
    for kind in kinds:
        if SHORT[kind] not in cfg.servers:
            continue
        progress(f"{scenario}: {kind}")
        deployment = stack.deploy(kind, replicas, scaled)
        try:
            connect(lg, deployment, cfg, subscribers, [channel], subscribers)
            common = {"urls": deployment.urls, "token": deployment.publisher_token, "channel": channel,
                      "window": window or cfg.window, "publishers": publishers, "warmup": cfg.warmup,
                      "pids": deployment.pids(),
                      # Vonix assigns offsets: every client must see them contiguous. The reference
                      # has no sequence of its own: with several publishers only counts are checked.
                      "check_order": deployment.seq_key == "offset" or publishers == 1}
            saturated = measure(lambda c=common: lg.call(cmd="fanout", rate=None, seconds=cfg.seconds, **c),
                                f"{scenario} {kind}", cfg.retries)
            fixed = measure(lambda c=common: lg.call(cmd="fanout", rate=cfg.latency_rate,
                                                     seconds=max(0.5, cfg.seconds / 2), **c),
                            f"{scenario} {kind}", cfg.retries)
            lg.call(cmd="close")
        finally:
            deployment.stop()
        note = ""
        if kind == VONIX:
            note = "embedded (SQLite)" if replicas == 1 and not scaled else "scaled (PostgreSQL + Redis)"
            if channel.startswith("room:"):
                note += ", every message stored"
        results.append(FanoutResult(scenario, kind, saturated, fixed, note, subscribers, channel))
    return results


def pipelined_scenario(stack: Stack, lg: LoadGen, cfg: Config) -> list[FanoutResult]:
    """Issue 15, item 1: one connection (a bridge bot) keeping 50 publishes in flight to one
    `room:` channel on PostgreSQL, with 10 and with 200 subscribers."""
    results: list[FanoutResult] = []
    for subscribers in dict.fromkeys((10, min(200, cfg.subscribers))):  # smaller in quick runs
        results += fanout_scenario(stack, lg, cfg, 1, channel="room:general", subscribers=subscribers,
                                   publishers=1, window=50, scaled=True, kinds=(REFERENCE, VONIX),
                                   scenario=f"room: 1 publisher, 50 in flight, {subscribers} subs")
    return results


def persisted_scenario(stack: Stack, lg: LoadGen, cfg: Config) -> list[FanoutResult]:
    """Issue 15, item 2: the fan-out of a stored `room:` channel (what members use), 1 and 2
    replicas, publishes from 1 and from 4 connections; every message stored in PostgreSQL."""
    results: list[FanoutResult] = []
    for replicas in (1, 2):
        for publishers in (1, 4):
            per = cfg.subscribers // replicas
            shape = f"{replicas} replica x {cfg.subscribers:,}" if replicas == 1 else \
                f"{replicas} replicas x {per:,}"
            results += fanout_scenario(stack, lg, cfg, replicas, channel="room:general", publishers=publishers,
                                       subscribers=cfg.subscribers, scaled=True, kinds=(REFERENCE, VONIX),
                                       scenario=f"room: {shape}, {publishers} publisher{'s' * (publishers > 1)}")
    return results


def rooms_scenario(stack: Stack, lg: LoadGen, cfg: Config) -> list[RoomsResult]:
    rooms = max(1, cfg.room_clients // cfg.room_size)
    names = [f"bench-{i:04d}" for i in range(rooms)]
    results = []
    for kind in (REFERENCE, VONIX):
        if kind not in cfg.servers:
            continue
        progress(f"rooms: {kind}")
        deployment = stack.deploy(kind, 1, scaled=cfg.rooms_scaled)
        try:
            if kind == VONIX:
                create_rooms(deployment.base_url, deployment.tokens[0], names)
            connect(lg, deployment, cfg, cfg.room_clients, [f"room:{n}" for n in names], cfg.room_size)
            # Every client's first message is in the warm-up: it pays the membership lookup that a
            # subscribe no longer does (2,000 first messages within a second are a synthetic burst).
            warmup = max(cfg.warmup, min(4.0, 3 / cfg.room_rate)) if cfg.seconds >= 2 else cfg.warmup
            run = measure(lambda d=deployment, w=warmup: lg.call(cmd="rooms", rate=cfg.room_rate, warmup=w,
                                                       seconds=cfg.seconds, pids=d.pids()),
                          f"rooms {kind}", cfg.retries)
            lg.call(cmd="close")
        finally:
            deployment.stop()
        note = "nothing stored"
        if kind == VONIX:
            note = "persisted: every message stored ({}, group commit)".format(
                "PostgreSQL" if cfg.rooms_scaled else "SQLite")
        results.append(RoomsResult(kind, run, note))
        if kind == VONIX and (run.lost or (run.latency("p99") or 0) > 100) and cfg.room_rate > 0.1:
            # overloaded: measure again at a tenth of the load, to show the cost of a room message
            progress("rooms: vonix is overloaded; measuring at a tenth of the load")
            deployment = stack.deploy(kind, 1, scaled=cfg.rooms_scaled)
            try:
                create_rooms(deployment.base_url, deployment.tokens[0], names)
                connect(lg, deployment, cfg, cfg.room_clients, [f"room:{n}" for n in names], cfg.room_size)
                run = measure(lambda d=deployment: lg.call(cmd="rooms", rate=cfg.room_rate / 10, warmup=cfg.warmup,
                                                           seconds=cfg.seconds, pids=d.pids()), "rooms", cfg.retries)
                lg.call(cmd="close")
            finally:
                deployment.stop()
            results.append(RoomsResult(f"vonix @ {cfg.room_rate / 10:g} msg/s", run, note))
    return results


def connect_scenario(stack: Stack, lg: LoadGen, cfg: Config, *, scenario: str, channels: list[str],
                     users: int | None = None, scaled: bool = False, resubscribe: bool = False,
                     costs: list[resubscribe_cost.ResubscribeCost] | None = None) -> list[IdleResult]:
    """Connections/s (token on the upgrade, then one subscribe each) and RSS growth per connection;
    client i subscribes to channels[i // (n / len(channels))]. `resubscribe`: then the server CPU
    of resubscribing 10 of the channels on one connection, single vs batch (into `costs`)."""
    costs = costs if costs is not None else []
    results = []
    group = max(1, cfg.idle // len(channels))
    for kind in (REFERENCE, VONIX):
        if SHORT[kind] not in cfg.servers:
            continue
        progress(f"{scenario}: {kind}")
        deployment = stack.deploy(kind, 1, scaled, users)
        try:
            if kind == VONIX and channels[0].startswith("room:"):
                create_rooms(deployment.base_url, deployment.tokens[0], [c.removeprefix("room:") for c in channels])
            pid = deployment.servers[0].pid
            connect(lg, deployment, cfg, min(200, cfg.idle), channels, group)  # warm up, then measure
            lg.call(cmd="close")
            settle = 0.5 if cfg.idle < 2000 else 2.0
            time.sleep(settle / 2)
            before = rss_kib(pid)
            pids = {"server": [pid], **deployment.extra_pids()}
            cpu0 = lg.call(cmd="cpu", pids=pids)["cpu_ticks"]
            done = connect(lg, deployment, cfg, cfg.idle, channels, group)
            cpu1 = lg.call(cmd="cpu", pids=pids)["cpu_ticks"]
            time.sleep(settle)
            after = rss_kib(pid)
            lg.call(cmd="close")
            if kind == VONIX and resubscribe:
                costs.append(resubscribe_cost.measure(deployment.urls[0], deployment.tokens[0], channels[:10],
                                                      [pid, *deployment.extra_pids().get("redis", [])],
                                                      rounds=cfg.resubscribe_rounds))
        finally:
            deployment.stop()
        note = "nothing stored" if kind != VONIX else (
            "scaled (PostgreSQL + Redis)" if scaled else "embedded (SQLite)")
        results.append(IdleResult(kind, done["connected"], done["failed"], done["seconds"], before, after,
                                  (cpu1["loadgen"] - cpu0["loadgen"]) / CLK_TCK,
                                  (cpu1["server"] - cpu0["server"]) / CLK_TCK, scenario,
                                  (cpu1.get("redis", 0) + cpu1.get("db", 0) - cpu0.get("redis", 0)
                                   - cpu0.get("db", 0)) / CLK_TCK, note))
    return results


def idle_scenario(stack: Stack, lg: LoadGen, cfg: Config) -> list[IdleResult]:
    return connect_scenario(stack, lg, cfg, scenario="bot: 1 channel", channels=["bot:idle"])


def subscribe_scenario(stack: Stack, lg: LoadGen, cfg: Config,
                       costs: list[resubscribe_cost.ResubscribeCost]) -> list[IdleResult]:
    """Issue 15, item 3: what members do after a deploy: connect, authenticate and subscribe to a
    `room:` channel (persisted: membership, position, presence), 100 users over 100 rooms."""
    rooms = max(10, min(100, cfg.idle // 100))
    return connect_scenario(stack, lg, cfg, scenario=f"room: {rooms} rooms, {cfg.subscribe_users} users",
                            channels=[f"room:sub-{i:03d}" for i in range(rooms)], users=cfg.subscribe_users,
                            scaled=True, resubscribe=True, costs=costs)


# --- report -----------------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def _lost(run: Run) -> str:
    return f"{run.lost:,} of {run.expected:,}"


def _share(cpu: float, run: Run) -> str:
    return f"{100 * cpu / run.seconds:.0f}%"


def report(cfg: Config, fanout: list[FanoutResult], rooms: list[RoomsResult], idle: list[IdleResult],
           resubscribes: list[resubscribe_cost.ResubscribeCost] | None = None) -> list[str]:
    """Print the tables; returns the warnings (also printed)."""
    warnings: list[str] = []
    targets: list[tuple[str, str, str]] = []

    def check_loadgen(label: str, server_cpu: float, loadgen_cpu: float) -> None:
        if loadgen_cpu > server_cpu + 2 / CLK_TCK:  # CPU times are counted in ticks
            warnings.append(f"WARNING: {label}: the load generator used more CPU ({loadgen_cpu:.2f} s) than the "
                            f"server ({server_cpu:.2f} s); the result may be limited by the client")

    if fanout:
        rows = []
        for scenario in dict.fromkeys(r.scenario for r in fanout):
            group = [r for r in fanout if r.scenario == scenario]
            ref = next((r for r in group if r.server == REFERENCE), None)
            for r in group:
                s, f = r.saturated, r.fixed
                ref_run = ref.saturated if ref else None
                rows.append([scenario, r.server, s.rate, _ratio(s.rate, ref_run.rate if ref_run else None),
                             s.per_core_second, _ratio(s.per_core_second, ref_run.per_core_second if ref_run else None),
                             _ms(s.latency("p99")), _ms(f.latency("p50")), _ms(f.latency("p99")),
                             _lost(s) if s.lost or not f.lost else _lost(f),
                             _share(s.server_cpu, s), _share(s.loadgen_cpu, s), f"{s.other_load:.0%}", r.note])
                for run, what in ((s, "saturated"), (f, "fixed rate")):
                    check_loadgen(f"{scenario}, {r.server}, {what}", run.server_cpu, run.loadgen_cpu)
                    if run.disorder or run.raw.get("closed"):
                        warnings.append(f"WARNING: {scenario}, {r.server}, {what}: {run.disorder} frames out of "
                                        f"order, {run.raw.get('closed')} connections closed by the server")
                    if run.other_load > OTHER_LOAD_RETRY:
                        warnings.append(f"note: {scenario}, {r.server}, {what}: other processes used "
                                        f"{run.other_load:.0%} of a core during the run (shared machine)")
                if r.server == VONIX and r.channel.startswith("room:") and r.subscribers <= 10:
                    messages = s.rate / max(1, r.subscribers)
                    targets.append((f"{scenario}: >= 3,000 acknowledged messages/s, zero loss",
                                    f"{messages:,.0f}/s, {s.lost + s.disorder} lost",
                                    "met" if messages >= 3000 and s.lost + s.disorder == 0 else "MISSED"))
                elif r.server == VONIX and ref is not None:
                    ratio = s.rate / ref.saturated.rate if ref.saturated.rate else 0.0
                    lost = s.lost + f.lost + s.disorder + f.disorder
                    targets.append((f"{scenario}: >= 2x reference deliveries/s, zero loss",
                                    f"{ratio:.2f}x ({s.per_core_second / ref.saturated.per_core_second:.2f}x per "
                                    f"core-second), {lost} lost", "met" if ratio >= 2 and lost == 0 else "MISSED"))
        print_table(f"Fan-out: deliveries/s at saturation (closed loop, {cfg.window} messages in flight) and "
                    f"publish-to-receive latency at {cfg.latency_rate:g} messages/s (the same load for all)",
                    ["scenario", "server", "deliveries/s", "vs ref", "per core-s", "vs ref", "sat p99 ms",
                     "p50 ms", "p99 ms", "lost", "server cpu", "loadgen cpu", "other load", "note"], rows)
    if rooms:
        ref = next((r for r in rooms if r.server == REFERENCE), None)
        rows = []
        for r in rooms:
            run = r.run
            per_k = 1e6 * run.server_cpu / run.deliveries if run.deliveries else 0.0  # ms per 1,000
            ref_per_k = 1e6 * ref.run.server_cpu / ref.run.deliveries if ref and ref.run.deliveries else None
            rows.append([r.server, f"{run.raw['clients']:,} in {run.raw['channels']:,}",
                         float(run.raw["publishes_per_s"]), run.rate, _ms(run.latency("p50")),
                         _ms(run.latency("p99")), _lost(run), f"{per_k:.1f}", _ratio(per_k, ref_per_k),
                         int(run.raw["refused"]), _share(run.server_cpu, run),
                         _share(run.cpu("redis") + run.cpu("db"), run), _share(run.loadgen_cpu, run),
                         f"{run.other_load:.0%}", r.note])
            check_loadgen(f"rooms, {r.server}", run.server_cpu, run.loadgen_cpu)
            if run.lost and float(run.raw.get("drain_seconds", 0)) >= 9.9:
                warnings.append(f"note: rooms, {r.server}: {run.lost:,} messages had not arrived 10 s after the "
                                "publishers stopped: the server was overloaded (a backlog, counted as lost)")
            if r.server == VONIX:
                p99 = run.latency("p99") or 0.0
                targets.append(("rooms: p99 publish-to-receive < 100 ms", f"{p99:.1f} ms",
                                "met" if p99 < 100 else "MISSED"))
                targets.append(("rooms: server CPU per 1,000 deliveries <= reference",
                                f"{per_k:.1f} vs {ref_per_k:.1f} ms" if ref_per_k else f"{per_k:.1f} ms",
                                "met" if ref_per_k and per_k <= ref_per_k else "MISSED"))
        print_table(f"Rooms: {cfg.room_clients:,} clients in rooms of {cfg.room_size}, each publishing "
                    f"{cfg.room_rate:g} message/s",
                    ["server", "clients", "publishes/s", "deliveries/s", "p50 ms", "p99 ms", "lost",
                     "cpu ms/1k deliv", "vs ref", "refused", "server cpu", "redis+db cpu", "loadgen cpu",
                     "other load", "note"], rows)
    if idle:
        rows = []
        for r in idle:
            ref_idle = next((i for i in idle if i.server == REFERENCE and i.scenario == r.scenario), None)
            rows.append([r.scenario, r.server, r.connections, r.rate,
                         _ratio(r.rate, ref_idle.rate if ref_idle else None), r.kib_per_connection, r.failed,
                         f"{r.server_cpu:.2f} s", f"{r.backend_cpu:.2f} s", f"{r.loadgen_cpu:.2f} s", r.note])
            check_loadgen(f"connections, {r.scenario}, {r.server}", r.server_cpu, r.loadgen_cpu)
            if r.server != VONIX:
                continue
            if r.scenario.startswith("room:"):
                targets.append((f"connect + auth + subscribe, {r.scenario}: >= 1,500 connections/s",
                                f"{r.rate:,.0f}/s", "met" if r.rate >= 1500 and not r.failed else "MISSED"))
            else:
                targets.append((f"{r.connections:,} idle connections: <= 20 KiB each",
                                f"{r.kib_per_connection:.1f} KiB", "met" if r.kib_per_connection <= 20 else "MISSED"))
                targets.append(("connecting with token auth: >= 1,000 connections/s", f"{r.rate:,.0f}/s",
                                "met" if r.rate >= 1000 else "MISSED"))
        print_table(f"Connections: {cfg.idle:,} clients, token on the upgrade, each subscribed to one channel; "
                    "server RSS growth per connection",
                    ["scenario", "server", "connections", "connect/s", "vs ref", "KiB/conn", "failed", "server cpu",
                     "redis+db cpu", "loadgen cpu", "note"], rows)
    for cost in resubscribes or []:
        print_table(f"Resubscribing {cost.rooms} rooms on one connection (server CPU per round of {cost.rounds}, "
                    f"the {cost.rooms} unsubscribes of a round included in both)",
                    ["variant", "server cpu ms", "vs single"],
                    [[f"{cost.rooms} single subscribes", f"{cost.single_ms:.2f}", "1.00x"],
                     [f"one batch subscribe of {cost.rooms}", f"{cost.batch_ms:.2f}", f"{cost.ratio:.2f}x"]])
        targets.append((f"resubscribing {cost.rooms} rooms: a batch costs less than {cost.rooms} single subscribes",
                        f"{cost.ratio:.2f}x", "met" if cost.ratio < 1 else "MISSED"))
    print_targets("Targets (issue 5)", targets, warnings)
    return warnings


def preflight() -> None:
    """Node.js for the load generator; say so when the processes cannot be pinned."""
    check_node()
    if TASKSET is None:
        print("warning: taskset not found (util-linux): servers and load generator are not pinned", flush=True)


def main() -> int:
    cfg = Config()
    preflight()
    started = time.monotonic()
    stack = Stack(cfg)
    lg = LoadGen()
    fanout: list[FanoutResult] = []
    rooms: list[RoomsResult] = []
    idle: list[IdleResult] = []
    resubscribes: list[resubscribe_cost.ResubscribeCost] = []
    try:
        if "fanout" in cfg.scenarios:
            fanout += fanout_scenario(stack, lg, cfg, 1)
        if "replicas" in cfg.scenarios:
            fanout += fanout_scenario(stack, lg, cfg, 2)
        if "persisted" in cfg.scenarios:
            fanout += persisted_scenario(stack, lg, cfg)
        if "pipelined" in cfg.scenarios:
            fanout += pipelined_scenario(stack, lg, cfg)
        if "rooms" in cfg.scenarios:
            rooms = rooms_scenario(stack, lg, cfg)
        if "idle" in cfg.scenarios:
            idle = idle_scenario(stack, lg, cfg)
        if "subscribe" in cfg.scenarios:
            idle += subscribe_scenario(stack, lg, cfg, resubscribes)
    finally:
        lg.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept server logs in {stack.dir}", file=sys.stderr)
            stack.dir = Path(tempfile.mkdtemp())
        stack.cleanup()
    print(f"bench_fanout: {os.cpu_count()} cores, servers on core {SERVER_CORE}"
          f"{'' if TASKSET else ' (NOT pinned: no taskset)'}, load generator on core {LOADGEN_CORE}; "
          f"{time.monotonic() - started:.0f} s\n", flush=True)
    report(cfg, fanout, rooms, idle, resubscribes)
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps({
            "config": asdict(cfg),
            "fanout": [{"scenario": r.scenario, "server": r.server, "saturated": r.saturated.raw,
                        "fixed": r.fixed.raw, "note": r.note} for r in fanout],
            "rooms": [{"server": r.server, "run": r.run.raw, "note": r.note} for r in rooms],
            "idle": [asdict(r) for r in idle]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
