"""The game chat bridge for real (docs/plugins.md): examples/minecraft_bridge.py runs as a
subprocess with a game server's key against a test server; lines fed on its stdin (log lines and
the line protocol) become room messages with `via` and `system`; a member's room message comes
out on its stdout as a `tellraw` command and its own messages never do (no loop); join and leave
make the server's status exact; after the server restarts it reconnects by itself, prints what
was posted meanwhile (recovered with `since`) once, and publishes what the game said meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.accounts import bearer, make_admin
from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.example_process import ExampleProcess

ROOT = Path(__file__).resolve().parents[2]


class BridgeProcess(ExampleProcess):
    """examples/minecraft_bridge.py; stdout (game commands) and stderr (status) collected apart."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__("minecraft_bridge.py", {
            **os.environ, "PYTHONPATH": str(ROOT), "VONIX_URL": url, "VONIX_SERVER_KEY": key,
            "VONIX_ROOM": "general", "VONIX_BACKOFF": "0.1,0.5"}, stdin=True)

    async def wait_for(self, lines: list[str], text: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        return await super().wait_for(lines, re.escape(text), count, timeout)


async def room(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    page = await client.get("/api/channels/room:general/messages", params={"since": 0, "limit": 200}, headers=headers)
    assert page.status_code == 200, page.text
    return list(page.json()["messages"])


async def until(check: Any, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.1)


async def players_of(client: httpx.AsyncClient, sid: int) -> dict[str, Any]:
    servers = (await client.get("/api/servers")).json()["servers"]
    status = next(s for s in servers if s["id"] == sid)["status"] or {}
    return dict(status.get("players") or {})


@pytest.mark.slow
async def test_the_bridge_relays_both_ways_without_loops_and_recovers(tmp_path: Path, sqlite_template: str) -> None:
    from tests.conftest import fresh_sqlite_url

    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), DRAIN_SECONDS=1)
    server = await AppServer(settings).start()
    bridge: BridgeProcess | None = None
    try:
        async with server.client() as client:
            u = await people(client, "root", "alex")
            await make_admin(server, "root")
            created = await client.post("/api/admin/servers", json={"name": "Survival", "host": "127.0.0.1",
                                                                     "port": 25565}, headers=u["root"]["headers"])
            sid = created.json()["id"]
            key = (await client.post(f"/api/admin/servers/{sid}/keys", json={"name": "bridge"},
                                     headers=u["root"]["headers"])).json()["key"]
            alex = u["alex"]
            bridge = await BridgeProcess(server.base_url, key).start()
            await bridge.wait_for(bridge.err, "subscribed to room:general")
            # the bridge asks the console who is online; the game answers in its log
            await bridge.wait_for(bridge.out, "list")
            await bridge.feed("[11:59:59] [Server thread/INFO]: There are 0 of a max of 20 players online: ")
            assert await until(lambda: _exact(client, sid, []), "the list is exactly empty")

            # game -> room: log lines and the line protocol
            await bridge.feed("[12:00:00] [Server thread/INFO]: Steve joined the game",
                              "[12:00:01] [Server thread/INFO]: <Steve> hello from the game",
                              "join Herobrine",
                              "[12:00:02] [Server thread/INFO]: Steve was slain by Zombie",
                              "[12:00:03] [Server thread/INFO]: Steve has made the advancement [Stone Age]",
                              "[12:00:04] [Server thread/INFO]: Herobrine left the game",
                              "this line is nothing")
            await bridge.wait_for(bridge.err, "sent ", count=6)
            messages = await room(client, alex["headers"])
            relayed = [(m["from"]["username"], m["data"]) for m in messages if m["data"].get("via")]
            bot = relayed[0][0]
            assert bot == "Survival_game"
            steve, herobrine = {"source": "game", "name": "Steve"}, {"source": "game", "name": "Herobrine"}
            assert [data for _, data in relayed] == [
                {"text": "Steve joined the game", "via": steve, "system": "join"},
                {"text": "hello from the game", "via": steve},
                {"text": "Herobrine joined the game", "via": herobrine, "system": "join"},
                {"text": "Steve was slain by Zombie", "via": steve, "system": "death"},
                {"text": "Steve has made the advancement [Stone Age]", "via": steve, "system": "advancement"},
                {"text": "Herobrine left the game", "via": herobrine, "system": "leave"},
            ]
            # join and leave made the server's list exact
            assert await until(lambda: _exact(client, sid, ["Steve"]), "the list is exactly [Steve]")

            # room -> game, and no loop: only alex's message comes out on stdout
            await say(client, alex, "room:general", {"text": 'hi "Steve" \\ from the site'})
            line = (await bridge.wait_for(bridge.out, "from the site"))[0]
            assert line.startswith("tellraw @a ")
            parts = json.loads(line.removeprefix("tellraw @a "))
            assert [p["text"] for p in parts] == ["[Vonix] ", "alex", ': hi "Steve" \\ from the site']
            assert [out for out in bridge.out if out != "list"] == [line]  # its own messages never come back

            # the server restarts; the bridge is held while alex posts and the game talks
            await server.stop()
            await bridge.wait_for(bridge.err, "disconnected:")
            await bridge.feed("<Steve> said while Vonix was away")
            bridge.signal(signal.SIGSTOP)
        server = await AppServer(settings, port=server.port).start()
        async with server.client() as client:
            await say(client, alex, "room:general", {"text": "posted while the bridge was away"})
            bridge.signal(signal.SIGCONT)
            await bridge.wait_for(bridge.err, "(connection 2)")
            await bridge.wait_for(bridge.out, "list", count=2)  # asked again after the reconnect
            recovered = await bridge.wait_for(bridge.out, "posted while the bridge was away")
            assert len(recovered) == 1
            await bridge.wait_for(bridge.err, "(recovered)")

            async def stored_once() -> bool:
                texts = [m["data"]["text"] for m in await room(client, alex["headers"])]
                return texts.count("said while Vonix was away") == 1

            assert await until(stored_once, "the game's line published once after the reconnect")
            # on reconnect the bridge sent the full list it knows: still exact
            assert await until(lambda: _exact(client, sid, ["Steve"]), "the list it knows, sent after the reconnect")
            assert (await client.get(f"/api/plugin/players/{'0' * 32}", headers=bearer(key))).status_code == 200
            await asyncio.sleep(0.3)
            assert len([out for out in bridge.out if "from the site" in out]) == 1  # recovery did not repeat it
    finally:
        if bridge is not None:
            await bridge.stop()
        await server.stop()


async def _exact(client: httpx.AsyncClient, sid: int, names: list[str]) -> bool:
    players = await players_of(client, sid)
    return bool(players.get("exact")) and players.get("sample") == names
