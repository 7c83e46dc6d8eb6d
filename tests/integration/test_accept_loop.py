"""`vonix serve` on the accept loop (server/eager_accept.py), end to end: a connection stops
counting as opening as soon as its first exchange is done (a websocket's first frame handled, an
HTTP request read), told by the server itself, not when the deadline runs out; the limit and the
deadline are the settings' (ACCEPT_OPENING_LIMIT, ACCEPT_OPENING_SECONDS); the numbers are on
/metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_realtime_replicas import make_users
from tests.support.replica import Replica
from tests.support.wsclient import WsClient


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not on /metrics"
    return float(found.group(1))


async def test_connections_stop_opening_at_their_first_exchange(backend: dict[str, Any], tmp_path: Path) -> None:
    settings = {**backend, "MAINTENANCE_ENABLED": "false", "ACCEPT_OPENING_LIMIT": "2", "ACCEPT_OPENING_SECONDS": "1"}
    replica = Replica(settings, log_path=tmp_path / "replica.log").start()
    try:
        tokens = await make_users(replica.base_url, "Opener")
        # One at a time, each through its first exchange before the next: the limit of 2 never bites.
        clients = [await WsClient.connect(replica.base_url, tokens["Opener"]) for _ in range(12)]
        for client in clients:
            assert (await client.request("ping"))["ok"]
        for _ in range(8):  # plain HTTP requests, each on a fresh connection
            async with httpx.AsyncClient(base_url=replica.base_url) as http:
                assert (await http.get("/api/health")).status_code == 200
        async with httpx.AsyncClient(base_url=replica.base_url) as http:  # one kept-alive connection
            text = (await http.get("/metrics")).text
            # Well inside the 1 s after which a silent connection stops counting by itself.
            assert gauge(text, "vonix_accept_opening") == 0 and gauge(text, "vonix_accept_waiting") == 0

            silent = [await asyncio.open_connection("127.0.0.1", replica.port) for _ in range(2)]
            started = asyncio.get_running_loop().time()
            reader, writer = await asyncio.open_connection("127.0.0.1", replica.port)
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await asyncio.sleep(0.3)
            text = (await http.get("/metrics")).text
            # ACCEPT_OPENING_LIMIT: two silent ones hold both slots; the third waits, its request unread.
            assert (gauge(text, "vonix_accept_opening"), gauge(text, "vonix_accept_waiting")) == (2, 1)
            answer = await asyncio.wait_for(reader.read(), 5)
            waited = asyncio.get_running_loop().time() - started
            assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
            # ACCEPT_OPENING_SECONDS: served when the silent ones stopped counting, 1 s after they came.
            assert 0.8 <= waited < 2.0, f"the waiting request was answered after {waited:.2f} s"
            text = (await http.get("/metrics")).text
            assert gauge(text, "vonix_accept_opening") == 0 and gauge(text, "vonix_accept_waiting") == 0
        writer.close()
        for _, silent_writer in silent:
            silent_writer.close()
        for client in clients:
            await client.close()
    finally:
        replica.stop()
