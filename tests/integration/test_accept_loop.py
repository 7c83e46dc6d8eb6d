"""`vonix serve` on the accept loop (server/eager_accept.py), end to end: a connection stops
counting as opening as soon as its first exchange is done (a websocket's first frame handled, an
HTTP request read), told by the server itself, not when the 2 s deadline runs out; the numbers
are on /metrics."""

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
    replica = Replica({**backend, "MAINTENANCE_ENABLED": "false"}, log_path=tmp_path / "replica.log").start()
    try:
        tokens = await make_users(replica.base_url, "Opener")
        clients = [await WsClient.connect(replica.base_url, tokens["Opener"]) for _ in range(12)]
        for client in clients:
            assert (await client.request("ping"))["ok"]
        for _ in range(8):  # plain HTTP requests, each on a fresh connection
            async with httpx.AsyncClient(base_url=replica.base_url) as http:
                assert (await http.get("/api/health")).status_code == 200
        async with httpx.AsyncClient(base_url=replica.base_url) as http:
            text = (await http.get("/metrics")).text
        # Well inside the 2 s after which a silent connection stops counting by itself.
        assert gauge(text, "vonix_accept_opening") == 0 and gauge(text, "vonix_accept_waiting") == 0
        silent = [await asyncio.open_connection("127.0.0.1", replica.port) for _ in range(3)]
        async with httpx.AsyncClient(base_url=replica.base_url) as http:
            assert gauge((await http.get("/metrics")).text, "vonix_accept_opening") == 3  # they said nothing
            await asyncio.sleep(2.5)
            assert gauge((await http.get("/metrics")).text, "vonix_accept_opening") == 0  # the deadline
        for _, writer in silent:
            writer.close()
        for client in clients:
            await client.close()
    finally:
        replica.stop()
