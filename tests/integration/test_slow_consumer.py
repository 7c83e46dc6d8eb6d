"""A consumer that never reads: bounded server memory, close 4101, and nobody else slowed down.

tests/integration/test_realtime_core.py already checks the cut-off itself (4101, the metric, the
queues of the *other* connections). This test measures what the slow connection costs while it is
being flooded, with a raw socket (a small fixed SO_RCVBUF, never read after the subscribe reply:
the `websockets` client would keep reading in the background):

- every 1 ms while the flood lasts, the server-side bytes held for that connection — its queue
  (`Connection.queued_bytes`) plus its socket's user-space write buffer — stay below
  WS_MAX_QUEUE_BYTES plus the overhead docs/protocol.md documents (one more batch and the
  transport's 64 KiB high-water mark), and the peak RSS of the process grows by far less than the
  flood (an unbounded queue would hold all of it: both measures would fail);
- the connection is closed with 4101;
- a normal subscriber on the same channel (one that keeps up: each publish waits for it to have
  the one before) gets every message, in order, with a p99 latency under a generous bound.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from realtime import errors
from tests.conftest import make_settings
from tests.support.accounts import login, register
from tests.support.appserver import AppServer
from tests.support.wsclient import WsClient

pytestmark = pytest.mark.slow
QUEUE_LIMIT = 64 * 1024
MESSAGES = 200
BLOB = 32 * 1024  # bytes of incompressible text per message: ~6 MiB through the channel in all
CHANNEL = "bot:firehose"
P99_BOUND = 0.5  # seconds; generous for a loaded 2-core machine (typical: a few ms)


def peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM), Linux ≥ 4.0; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame (clients must mask), payload < 64 KiB."""
    mask = os.urandom(4)
    length = len(payload)
    header = bytes([0x81, 0x80 | length]) if length < 126 else bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_subscriber(port: int, token: str) -> socket.socket:
    """Upgrade by hand on a socket with a small receive buffer, subscribe, read the reply, then
    never read again (the kernel buffers fill, then the server's)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fixed: no autotuning
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    await loop.sock_sendall(sock, masked_text_frame(orjson.dumps(
        {"id": 1, "op": "subscribe", "channel": CHANNEL, "presence": False})))
    while b'"ok":true' not in rest:  # the reply: a short unmasked text frame
        rest += await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
    return sock


async def read_close_code(sock: socket.socket, timeout: float = 10.0) -> int | None:
    """Read what the server sent until its close frame; its code (None: the stream ended without one)."""
    loop = asyncio.get_running_loop()
    buffer = b""
    position = 0  # the next frame's start (we read from the first byte after the reply: frame-aligned)
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        while position + 2 <= len(buffer):
            opcode, length, start = buffer[position] & 0x0F, buffer[position + 1] & 0x7F, position + 2
            if length == 126:
                length, start = int.from_bytes(buffer[start:start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(buffer[start:start + 8], "big"), start + 8
            if start + length > len(buffer):
                break  # the rest of this frame has not arrived yet
            if opcode == 0x8:
                return int.from_bytes(buffer[start:start + 2], "big")
            position = start + length
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), max(0.01, deadline - loop.time()))
        except (TimeoutError, ConnectionError):
            return None
        if not chunk:
            return None
        buffer += chunk
    return None


def held_bytes(conn: Any) -> int:
    """What the server holds in user space for one connection: its queue, plus its socket's write
    buffer (uvicorn's transport, reached through the protocol's `write_text` fast path)."""
    protocol = getattr(conn.transport.write, "__self__", None)
    buffered = protocol.transport.get_write_buffer_size() if protocol is not None else 0
    return int(conn.queued_bytes + buffered)


async def test_a_consumer_that_never_reads_is_bounded_and_cut_off(backend: dict[str, Any]) -> None:
    settings = make_settings(WS_MAX_QUEUE_BYTES=QUEUE_LIMIT, WS_PUBLISH_RATE=5000, WS_PUBLISH_BURST=5000,
                             WS_HISTORY_SIZE=10, **backend)
    async with AppServer(settings) as server:
        async with server.client() as client:
            tokens = {}
            for name in ("Sloth", "Swift", "Pub"):
                await register(client, name)
                tokens[name] = (await login(client, name.lower()))["access_token"]
        from server.db.queries import users

        pub = await users.by_username(server.resources.db, "pub")
        await users.update(server.resources.db, pub["id"], role="admin")  # admins publish on any bot: channel

        fast = await WsClient.connect(server.base_url, tokens["Swift"])
        assert (await fast.request("subscribe", channel=CHANNEL, presence=False))["ok"]
        slow_sock = await raw_subscriber(server.port, tokens["Sloth"])
        publisher = await WsClient.connect(server.base_url, tokens["Pub"])
        node = server.resources.node
        [slow] = [c for c in node.hub.connections.values() if c.user and c.user.username == "Sloth"]
        protocol = slow.transport.write.__self__
        high_water = protocol.transport.get_write_buffer_limits()[1]

        peak = 0
        stop = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop.is_set() and not slow.closed:
                peak = max(peak, held_bytes(slow))
                await asyncio.sleep(0.001)

        latencies: list[float] = []
        received: list[int] = []

        blob = secrets.token_hex(BLOB // 2)
        can_measure_rss = peak_rss_reset()
        rss_before = rss_kib("VmHWM")
        sampler = asyncio.create_task(sample())
        for n in range(MESSAGES):
            reply = await publisher.request("publish", channel=CHANNEL, data={"n": n, "t": time.monotonic(),
                                                                               "blob": blob})
            assert reply["ok"], reply
            # The normal subscriber keeps up: the next publish waits for it to have this one. Racing
            # ahead would let a stall of this shared loop put three 32 KiB messages in its 64 KiB
            # queue, and it would rightly be cut off too (seen once in CI).
            push = await fast.push("message", timeout=10)
            latencies.append(time.monotonic() - push["data"]["t"])
            received.append(push["data"]["n"])
        stop.set()
        await sampler
        rss_growth_kib = rss_kib("VmHWM") - rss_before

        # The slow connection: cut off with 4101, never holding more than the documented bound.
        for _ in range(200):
            if slow.closed:
                break
            await asyncio.sleep(0.01)
        assert slow.closed, "the consumer that never reads was not disconnected"
        batch = QUEUE_LIMIT + BLOB + 1024  # one batch: at most the limit plus the frame that crossed it
        bound = QUEUE_LIMIT + batch + high_water
        assert peak <= bound, f"held {peak} bytes for the slow connection, documented bound {bound}"
        assert peak > 0, "the sampler saw nothing: the measure is broken"
        flood_kib = MESSAGES * BLOB // 1024
        if can_measure_rss:
            assert rss_growth_kib < flood_kib // 2, (
                f"peak RSS grew {rss_growth_kib} KiB during a {flood_kib} KiB flood: memory is not bounded")
        assert await read_close_code(slow_sock) == errors.SLOW_CONSUMER.code
        slow_sock.close()

        # The normal subscriber: everything, in order, promptly.
        assert received == list(range(MESSAGES))
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        assert p99 < P99_BOUND, f"p99 latency {p99 * 1000:.0f} ms for the normal subscriber"
        print(f"slow consumer: peak held {peak} B (bound {bound} B, high water {high_water} B); "
              f"RSS peak +{rss_growth_kib} KiB for a {flood_kib} KiB flood; fast p99 {p99 * 1000:.1f} ms")
        await fast.close()
        await publisher.close()
