"""The reference the fan-out benchmark measures Vonix against: a minimal websocket fan-out server
written directly on the `websockets` library, the way a competent engineer would write one in an
afternoon.

- One process, one Redis pub/sub connection: a channel is subscribed on it when its first local
  client subscribes (the same rule Vonix follows); every Redis message is broadcast as received.
- A publish is encoded once (orjson) and published to Redis; the frame is sent to every local
  subscriber with `websockets.broadcast` (the bytes are framed once per connection, no JSON).
- `--coalesce-ms N`: instead of one websocket frame per message, what is queued for each
  connection during N ms is joined with `\\n` and sent as one frame (the technique Vonix uses).
- Token auth on the upgrade: `Authorization: Bearer <user id>.<hex HMAC-SHA256(secret, user id)>`
  (a signature check, no database), so "connections per second" includes an auth step.

Client protocol (a subset of Vonix protocol v1, same frame shapes):
  -> {"id": 1, "op": "subscribe", "channel": "bot:bench"}      <- {"id": 1, "ok": true}
  -> {"id": 2, "op": "publish", "channel": "...", "data": {...}} <- {"id": 2, "ok": true}
  <- {"op": "message", "channel": "...", "data": {...}, "from": {"id": 7}, "ts": 1.0}

Run: `python -m bench.reference_server --port 9000 --redis redis://127.0.0.1:6379/0`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import signal
import sys
import time
from http import HTTPStatus
from typing import Any

import orjson
import redis.asyncio as aioredis
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

PREFIX = "ref:"


def make_token(secret: str, user_id: int) -> str:
    signature = hmac.new(secret.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()
    return f"{user_id}.{signature}"


def check_token(secret: str, token: str) -> int | None:
    user, _, signature = token.partition(".")
    if not user.isdigit():
        return None
    expected = hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    return int(user) if hmac.compare_digest(expected, signature) else None


class Reference:
    def __init__(self, redis_url: str, secret: str, coalesce: float) -> None:
        self.secret = secret
        self.coalesce = coalesce
        self.redis = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=50, timeout=10))  # publishes wait for a connection, never fail
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.channels: dict[str, set[ServerConnection]] = {}
        self.users: dict[ServerConnection, int] = {}
        self.pending: dict[ServerConnection, list[bytes]] = {}
        self.flush_scheduled = False
        self.subscribe_lock = asyncio.Lock()  # one pub/sub connection: one SUBSCRIBE at a time
        self.loop = asyncio.get_running_loop()

    # --- upgrade: token check -----------------------------------------------------------------
    def process_request(self, connection: ServerConnection, request: Any) -> Any:
        header = request.headers.get("Authorization", "")
        user_id = check_token(self.secret, header[7:]) if header.startswith("Bearer ") else None
        if user_id is None:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad token\n")
        self.users[connection] = user_id
        return None

    # --- one client ---------------------------------------------------------------------------
    async def handler(self, connection: ServerConnection) -> None:
        user_id = self.users.get(connection, 0)
        subscribed: set[str] = set()
        try:
            async for raw in connection:
                frame = orjson.loads(raw)
                op, request_id, channel = frame.get("op"), frame.get("id"), frame.get("channel")
                if op == "subscribe" and isinstance(channel, str):
                    async with self.subscribe_lock:  # later subscribers wait for the first one's
                        members = self.channels.get(channel)
                        if members is None:
                            await self.pubsub.subscribe(PREFIX + channel)
                            members = self.channels[channel] = set()
                    members.add(connection)
                    subscribed.add(channel)
                    await connection.send(b'{"id":%d,"ok":true}' % request_id, text=True)
                elif op == "publish" and isinstance(channel, str):
                    payload = orjson.dumps({"op": "message", "channel": channel, "data": frame.get("data"),
                                            "from": {"id": user_id}, "ts": round(time.time(), 3)})
                    await self.redis.publish(PREFIX + channel, payload)
                    await connection.send(b'{"id":%d,"ok":true}' % request_id, text=True)
                else:
                    await connection.send(b'{"id":%d,"ok":false}' % (request_id or 0), text=True)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug here would skew the benchmark: make it visible in the log
            print(f"reference: handler failed: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            self.users.pop(connection, None)
            self.pending.pop(connection, None)
            for channel in subscribed:
                members = self.channels.get(channel)
                if members is not None:
                    members.discard(connection)

    # --- Redis -> local subscribers -----------------------------------------------------------
    async def read_redis(self) -> None:
        await self.pubsub.subscribe(PREFIX + "_alive")  # opens the connection before any client
        prefix = len(PREFIX)
        while True:
            message = await self.pubsub.get_message(timeout=5.0)
            if message is None or message["type"] != "message":
                continue
            members = self.channels.get(message["channel"].decode()[prefix:])
            if not members:
                continue
            if self.coalesce:
                self.queue(members, message["data"])
            else:
                broadcast(members, message["data"], text=True)

    def queue(self, members: set[ServerConnection], payload: bytes) -> None:
        pending = self.pending
        for connection in members:
            batch = pending.get(connection)
            if batch is None:
                pending[connection] = [payload]
            else:
                batch.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_later(self.coalesce, self.flush)

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        self.flush_scheduled = False
        for connection, batch in pending.items():
            broadcast((connection,), batch[0] if len(batch) == 1 else b"\n".join(batch), text=True)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--secret", default="reference-secret")
    parser.add_argument("--coalesce-ms", type=float, default=0.0,
                        help="batch what is queued per connection for this long into one frame (0: off)")
    args = parser.parse_args(argv)
    reference = Reference(args.redis, args.secret, args.coalesce_ms / 1000.0)
    reader = asyncio.create_task(reference.read_redis())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(reference.handler, args.host, args.port, compression=None,
                     process_request=reference.process_request, max_size=64 * 1024, backlog=4096):
        print(f"reference listening on {args.host}:{args.port}", flush=True)
        await stop.wait()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await reader
    return 0


def run() -> int:
    try:
        import uvloop  # the event loop uvicorn gives Vonix: same loop on both sides
    except ImportError:
        return asyncio.run(main(sys.argv[1:]))
    return uvloop.run(main(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(run())
