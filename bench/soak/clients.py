"""The soak's clients: one process drives a share of the members, each on its own websocket.

Run by the soak (`python -m bench.soak.clients CONFIG.json`), one event loop per process. Each
client is one member (its own user and token) subscribed to its room and its DM, through the
proxy. It behaves as docs/protocol.md asks of a client:
- on a lost connection it reconnects (1012: at once with up to 0.5 s of jitter; anything else: full
  jitter backoff, base 0.5 s, cap `backoff_cap`) and resubscribes both channels in one batch with
  `since` (the last offset it processed);
- it publishes with a nonce unique to the run, and on a temporary error (`retry_after` honoured) or
  a lost connection or an unanswered publish it sends the SAME nonce again until acknowledged,
  giving up after `give_up` seconds (reported, never silently dropped).

Everything is logged in memory and dumped at the end, one JSON line per client (`log`): acks
(channel, nonce, offset, epoch, first send, ack time, attempts, the errors met on the way), every
offset received per channel in arrival order (live pushes and `missed`), the first subscribe's
offset per channel (where its expected range starts), subscribe replies (recovered, how many
missed) and outages (close time, close code, resubscribed time, recovered?). Times are Unix
seconds so the soak can line them up with its chaos events.

Control on stdin, one command per line: `start` (begin publishing), `stop` (no new publishes; wait
until every pending one is acknowledged or given up), `settle PATH` (wait until every client holds
every channel's last stored offset, read from PATH), `leave` (close every connection, dump the log,
exit). Progress goes to stdout as JSON lines (`event`: connected, status, stopped, settled, done).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

SUBSCRIBE_TIMEOUT = 20.0
CONNECT_CONCURRENCY = 50  # first connections only: a deploy's clients do not all arrive in one tick


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


class ConnectionLost(Exception):
    """The connection a request was sent on closed before its reply came."""


@dataclass
class Outage:
    started: float
    code: int | None
    back: float | None = None
    attempts: int = 0
    recovered: bool = True  # every channel's resubscribe answered recovered: true

    def as_list(self) -> list[Any]:
        return [self.started, self.code, self.back, self.attempts, self.recovered]


@dataclass
class Client:
    index: int
    user: str
    token: str
    channels: list[str]
    cfg: dict[str, Any]
    ws: ClientConnection | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    first: dict[str, int] = field(default_factory=dict)
    epoch: dict[str, str] = field(default_factory=dict)
    pos: dict[str, int] = field(default_factory=dict)
    got: dict[str, list[int]] = field(default_factory=dict)
    missed: int = 0  # messages that came in `missed`
    epoch_changes: int = 0
    subscribes: list[list[Any]] = field(default_factory=list)  # [t, channel, recovered, missed, offset]
    sub_errors: list[list[Any]] = field(default_factory=list)  # [t, channel, code, temporary]
    outages: list[Outage] = field(default_factory=list)
    acks: list[list[Any]] = field(default_factory=list)
    unacked: list[list[Any]] = field(default_factory=list)
    refused: list[list[Any]] = field(default_factory=list)
    connects: int = 0
    connect_errors: dict[str, int] = field(default_factory=dict)
    leaving: bool = False
    _next_id: int = 0
    _waiters: dict[int, tuple[asyncio.Future[dict[str, Any]], str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.got = {channel: [] for channel in self.channels}

    # --- connection ------------------------------------------------------------------------

    async def run(self, gate: asyncio.Semaphore) -> None:
        attempt = 0
        delay = 0.0
        first = True
        while not self.leaving:
            if delay:
                await asyncio.sleep(delay)
            if self.leaving:
                return
            if self.outages and self.outages[-1].back is None:
                self.outages[-1].attempts += 1
            try:
                if first:
                    async with gate:
                        ws = await self._connect()
                else:
                    ws = await self._connect()
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                name = type(exc).__name__
                self.connect_errors[name] = self.connect_errors.get(name, 0) + 1
                delay = random.uniform(0, min(self.cfg["backoff_cap"], 0.5 * 2**attempt))
                attempt += 1
                continue
            self.ws = ws
            self.connects += 1
            reader = asyncio.create_task(self._read(ws))
            try:
                await self._subscribe_all()
                attempt = 0
                first = False
                await reader
            except (ConnectionLost, TimeoutError, ConnectionClosed):
                pass
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                self.ready.clear()
                self.ws = None
                self._fail_waiters()
            if self.leaving:
                return
            code = ws.close_code
            if ws.state.name != "CLOSED":  # a subscribe timed out on a live connection: drop it
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 2)
            if not self.outages or self.outages[-1].back is not None:
                self.outages.append(Outage(time.time(), code))
            if code == 1012:
                delay = random.uniform(0, 0.5)
            else:
                delay = random.uniform(0, min(self.cfg["backoff_cap"], 0.5 * 2**attempt))
                attempt += 1

    async def _connect(self) -> ClientConnection:
        return await connect(self.cfg["url"], additional_headers={"Authorization": f"Bearer {self.token}"},
                             compression=None, open_timeout=15, ping_interval=None, close_timeout=2,
                             max_size=32 * 1024 * 1024, max_queue=None, proxy=None, user_agent_header=None)

    def _fail_waiters(self) -> None:
        for future, _ in self._waiters.values():
            if not future.done():
                future.set_exception(ConnectionLost())
        self._waiters.clear()

    async def request(self, frame: dict[str, Any], kind: str = "", timeout: float = 10.0) -> dict[str, Any]:
        ws = self.ws
        if ws is None:
            raise ConnectionLost()
        self._next_id += 1
        frame["id"] = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[self._next_id] = (future, kind)
        try:
            await ws.send(orjson.dumps(frame).decode())
            return await asyncio.wait_for(future, timeout)
        except ConnectionClosed:
            raise ConnectionLost() from None
        finally:
            self._waiters.pop(frame["id"], None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a send that failed first leaves it unawaited

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                for part in (raw.encode() if isinstance(raw, str) else raw).split(b"\n"):
                    if part:
                        self._on_object(orjson.loads(part))
        self._fail_waiters()

    def _on_object(self, obj: dict[str, Any]) -> None:
        op = obj.get("op")
        if op == "message":
            channel = obj.get("channel")
            if channel in self.got:
                self._deliver(channel, obj["offset"], obj["epoch"])
            return
        if op is not None or "id" not in obj:
            return  # presence_diff, typing, ...: not accounted
        waiter = self._waiters.get(obj["id"])
        if waiter is None:
            return  # a reply that came after its request timed out
        future, kind = waiter
        if kind == "subscribe":
            # applied here, in the reader, so `missed` lands before the pushes that follow the reply
            for result in obj.get("results", [obj] if obj.get("ok") else []):
                self._apply_subscribe(result)
        if not future.done():
            future.set_result(obj)

    def _deliver(self, channel: str, offset: int, epoch: str) -> None:
        self.got[channel].append(offset)
        if self.epoch.get(channel) not in (None, epoch):
            self.epoch_changes += 1
            self.epoch[channel] = epoch
        if offset > self.pos.get(channel, 0):
            self.pos[channel] = offset

    def _apply_subscribe(self, result: dict[str, Any]) -> None:
        if not result.get("ok"):
            return
        channel = result["channel"]
        missed = result.get("missed") or []
        self.subscribes.append([time.time(), channel, bool(result.get("recovered")), len(missed),
                                result["offset"]])
        if channel not in self.first:
            self.first[channel] = result["offset"]
            self.epoch[channel] = result["epoch"]
            self.pos[channel] = result["offset"]
            return
        if not result.get("recovered") and self.outages and self.outages[-1].back is None:
            self.outages[-1].recovered = False
        for message in missed:
            self.missed += 1
            self._deliver(channel, message["offset"], message["epoch"])

    def _since(self, channel: str) -> dict[str, Any]:
        if channel not in self.first:
            return {"channel": channel}
        return {"channel": channel, "since": {"offset": self.pos[channel], "epoch": self.epoch[channel]}}

    async def _subscribe_all(self) -> None:
        """One batch subscribe with `since`; a channel refused `temporary` is asked again alone."""
        todo = list(self.channels)
        reply = await self.request({"op": "subscribe", "channels": [self._since(c) for c in todo]}, "subscribe",
                                   SUBSCRIBE_TIMEOUT)
        results = reply.get("results") if reply.get("ok") else [
            {"channel": c, "ok": False, "error": reply.get("error", {})} for c in todo]
        retry = []
        for result in results or []:
            if not result.get("ok"):
                error = result.get("error") or {}
                self.sub_errors.append([time.time(), result.get("channel"), error.get("code"),
                                        bool(error.get("temporary"))])
                if error.get("temporary"):
                    retry.append(result["channel"])
        while retry:
            await asyncio.sleep(1.0)
            channel = retry[0]
            frame = {"op": "subscribe", "channel": channel}
            if channel in self.first:
                frame["since"] = self._since(channel)["since"]
            single = await self.request(frame, "subscribe", SUBSCRIBE_TIMEOUT)
            if single.get("ok"):
                retry.pop(0)
            else:
                error = single.get("error") or {}
                self.sub_errors.append([time.time(), channel, error.get("code"), bool(error.get("temporary"))])
                if not error.get("temporary"):
                    retry.pop(0)
        if self.outages and self.outages[-1].back is None:
            self.outages[-1].back = time.time()
        self.ready.set()

    # --- publishing ------------------------------------------------------------------------

    async def publish(self, channel: str, nonce: str) -> None:
        """Until acknowledged: the same nonce after every temporary error or lost connection."""
        started = time.time()
        deadline = time.monotonic() + self.cfg["give_up"]
        attempts = 0
        errors: list[list[Any]] = []
        frame_data = {"text": f"soak {nonce}"}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.unacked.append([channel, nonce, started, attempts, errors])
                return
            try:
                await asyncio.wait_for(self.ready.wait(), left)
            except TimeoutError:
                continue
            attempts += 1
            try:
                reply = await self.request({"op": "publish", "channel": channel, "data": frame_data, "nonce": nonce},
                                           "publish", self.cfg["reply_timeout"])
            except ConnectionLost:
                errors.append([time.time(), "connection_lost", True])
                await asyncio.sleep(0.05)
                continue
            except TimeoutError:
                errors.append([time.time(), "no_reply", True])
                continue
            if reply.get("ok"):
                self.acks.append([channel, nonce, reply["offset"], reply["epoch"], started, time.time(), attempts,
                                  errors])
                return
            error = reply.get("error") or {}
            errors.append([time.time(), error.get("code"), bool(error.get("temporary"))])
            if not error.get("temporary"):
                self.refused.append([channel, nonce, started, error.get("code"), error.get("message")])
                return
            wait = error.get("retry_after") or random.uniform(0.25, 1.0)
            await asyncio.sleep(min(float(wait), 5.0))

    def log(self) -> dict[str, Any]:
        return {"index": self.index, "user": self.user, "channels": self.channels, "first": self.first,
                "epoch": self.epoch, "got": self.got, "missed": self.missed, "epoch_changes": self.epoch_changes,
                "subscribes": self.subscribes, "sub_errors": self.sub_errors,
                "outages": [o.as_list() for o in self.outages], "acks": self.acks, "unacked": self.unacked,
                "refused": self.refused, "connects": self.connects, "connect_errors": self.connect_errors}


class Swarm:
    """Every client of this process, the publisher and the control loop."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.clients = [Client(c["index"], c["user"], c["token"], c["channels"], cfg) for c in cfg["clients"]]
        self.rng = random.Random(cfg["seed"])
        self.pending: set[asyncio.Task[None]] = set()
        self.published = 0
        self.publishing = False
        self.runners: list[asyncio.Task[None]] = []

    async def main(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.runners = [asyncio.create_task(c.run(gate)) for c in self.clients]
        started = time.monotonic()
        while sum(c.ready.is_set() for c in self.clients) < len(self.clients):
            if time.monotonic() - started > self.cfg["connect_timeout"]:
                emit("connect_failed", ready=sum(c.ready.is_set() for c in self.clients), total=len(self.clients))
                break
            await asyncio.sleep(0.1)
        else:
            emit("connected", clients=len(self.clients), seconds=round(time.monotonic() - started, 2))
        status = asyncio.create_task(self.status())
        publisher: asyncio.Task[None] | None = None
        reader = await _stdin_reader()
        while line := (await reader.readline()).decode().strip():
            command, _, arg = line.partition(" ")
            if command == "start":
                self.publishing = True
                publisher = asyncio.create_task(self.publish_loop())
            elif command == "stop":
                self.publishing = False
                if publisher is not None:
                    await publisher
                if self.pending:
                    await asyncio.wait(self.pending)
                emit("stopped", published=self.published, acked=sum(len(c.acks) for c in self.clients),
                     unacked=sum(len(c.unacked) for c in self.clients))
            elif command == "settle":
                await self.settle(json.loads(Path(arg).read_text()))
            elif command == "leave":
                break
        status.cancel()
        await self.leave()

    async def publish_loop(self) -> None:
        """A steady rate: one publish every 1/rate s from a random member, in its room or its DM."""
        interval = 1.0 / self.cfg["rate"] if self.cfg["rate"] > 0 else None
        if interval is None:
            return
        next_at = time.monotonic()
        while self.publishing:
            client = self.rng.choice(self.clients)
            channel = client.channels[1] if len(client.channels) > 1 and self.rng.random() < self.cfg[
                "dm_share"] else client.channels[0]
            self.published += 1
            task = asyncio.create_task(client.publish(channel, f"soak-{self.cfg['proc']}-{self.published}"))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def status(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            emit("status", ready=sum(c.ready.is_set() for c in self.clients), published=self.published,
                 acked=sum(len(c.acks) for c in self.clients), pending=len(self.pending))

    async def settle(self, last: dict[str, int]) -> None:
        """Until every client holds each of its channels' last stored offset (or settle_timeout)."""
        deadline = time.monotonic() + self.cfg["settle_timeout"]
        while time.monotonic() < deadline:
            behind = [c for c in self.clients if any(c.pos.get(ch, 0) < last.get(ch, 0) for ch in c.channels)]
            if not behind:
                break
            await asyncio.sleep(0.2)
        emit("settled", behind=len(behind))

    async def leave(self) -> None:
        for client in self.clients:
            client.leaving = True
        closing = [asyncio.wait_for(c.ws.close(), 5) for c in self.clients if c.ws is not None]
        await asyncio.gather(*closing, return_exceptions=True)
        for runner in self.runners:
            runner.cancel()
        await asyncio.gather(*self.runners, return_exceptions=True)
        with open(self.cfg["log"], "wb") as out:
            for client in self.clients:
                out.write(orjson.dumps(client.log()) + b"\n")
        emit("done", log=self.cfg["log"])


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[1]).read_text())
    swarm = Swarm(cfg)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(swarm.main())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
