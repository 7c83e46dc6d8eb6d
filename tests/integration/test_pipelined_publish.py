"""Pipelined publishes on chat channels (issue 15, item 1): one connection keeps many publishes in
flight; they share commits instead of taking one commit window each, keep the connection's order,
and every reply still arrives (a refused message answers its own error without stopping the rest)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import THREE_MODES, make_settings
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.wsclient import WsClient


@THREE_MODES
async def test_fifty_publishes_in_flight_share_commits_and_keep_their_order(backend: dict[str, Any]) -> None:
    settings = make_settings(WS_COMMIT_WINDOW_MS=50, WS_PUBLISH_BURST=100, WS_PUBLISH_RATE=100, **backend)
    async with AppServer(settings) as server:
        async with server.client() as client:
            u = await people(client, "bridge", "reader")
        token = {name: u[name]["headers"]["Authorization"].split()[1] for name in u}
        reader = await WsClient.connect(server.base_url, token["reader"])
        bridge = await WsClient.connect(server.base_url, token["bridge"])
        try:
            assert (await reader.request("subscribe", channel="room:general"))["ok"]
            commits = server.resources.node.commits
            before = commits.batches
            texts = [f"[game] Steve: line {n}" for n in range(50)]
            texts[25] = "   "  # refused: the others must still be stored, in order
            replies = await asyncio.gather(*(bridge.request("publish", channel="room:general", data={"text": t},
                                                            nonce=f"line-{n}", timeout=15)
                                             for n, t in enumerate(texts)))
            assert replies[25]["error"]["code"] == "invalid_data"
            offsets = [r["offset"] for n, r in enumerate(replies) if n != 25]
            assert offsets == list(range(1, 50)), "the connection's order, no holes"
            # Awaiting each commit would take 49 batches (one per 50 ms window); pipelined, a few.
            assert commits.batches - before <= 10, commits.batches - before
            got = await reader.messages(49, timeout=15)
            assert [m["data"]["text"] for m in got] == [t for n, t in enumerate(texts) if n != 25]
            again = await bridge.request("publish", channel="room:general", data={"text": "again"}, nonce="line-3")
            assert again["offset"] == 4, "a repeated nonce still answers the first offset"
        finally:
            await bridge.close()
            await reader.close()
