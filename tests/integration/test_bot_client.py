"""The bot client against real servers.

Acceptance 9: the example bot authenticates with its token, answers a command, and after a server
restart reconnects by itself and answers what was posted while it was away, exactly once. There
everything is a real process: `vonix migrate`, `vonix create-bot`, `vonix serve` (stopped with
SIGTERM and started again on the same port and database) and `examples/echo_bot.py`.

The other tests run the app in-process (embedded mode) for the client's remaining promises: a
gap it cannot fill is reported, 4000-4099 stop it, 4100 refreshes the token, and a consumer that
falls behind loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtime.client import Closed, Connected, Disconnected, Gap, Message, VonixClient
from tests.conftest import fresh_sqlite_url, make_settings
from tests.support.accounts import bearer, login, make_admin, register
from tests.support.appserver import AppServer
from tests.support.example_process import ExampleProcess
from tests.support.replica import Replica
from tests.support.services import free_port
from tests.support.wsclient import WsClient

ROOT = Path(__file__).resolve().parents[2]
SECRET = "bot-client-test-secret-0123456789abcdefg"  # fixed: user tokens survive the restart
assert len(SECRET) == 40
ANSWERED = re.compile(r"answered #(\d+)( \(recovered\))? with #(\d+)")


def vonix(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "server.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Bot(ExampleProcess):
    """examples/echo_bot.py as a subprocess; what it says (stdout) is collected as it comes."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("echo_bot.py", env)

    @property
    def lines(self) -> list[str]:
        return self.out

    async def wait_for(self, pattern: str, count: int = 1, timeout: float = 15.0) -> list[str]:  # type: ignore[override]
        return await super().wait_for(self.out, pattern, count, timeout)

    def answers(self) -> list[tuple[int, bool]]:
        return [(int(m[1]), bool(m[2])) for m in map(ANSWERED.search, self.lines) if m]


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    for name in ("REDIS_URL", "VONIX_REPLICAS", "ALLOWED_ORIGINS"):  # embedded mode, whatever the shell says
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/vonix.db", "VONIX_ENV": "test", "SECRET_KEY": SECRET,
           "PYTHONPATH": str(ROOT), "DRAIN_SECONDS": "1", "MAINTENANCE_ENABLED": "false", "LOG_LEVEL": "WARNING"}
    vonix(["migrate"], env)
    created = vonix(["create-bot", "echo_bot"], env)
    token = re.search(r"token \(shown once, store it now\): (\S+)", created)
    assert token is not None, created
    servers: list[Replica] = []

    def serve() -> Replica:
        server = Replica(env, port=port, log_path=tmp_path / "server.log")
        servers.append(server)
        return server.start()

    bot = Bot({**os.environ, "PYTHONPATH": str(ROOT), "VONIX_URL": f"http://127.0.0.1:{port}",
               "VONIX_BOT_TOKEN": token[1], "VONIX_CHANNEL": "room:general", "VONIX_BACKOFF": "0.1,1"})
    try:
        yield {"serve": serve, "bot": bot, "base_url": f"http://127.0.0.1:{port}"}
    finally:
        await bot.stop()
        for server in servers:
            server.stop()


async def replies(base_url: str, token: str) -> Counter[int]:
    """How many bot replies the channel holds per command offset (from the database, via REST)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        page = await http.get("/api/channels/room:general/messages", params={"since": 0, "limit": 200},
                              headers=bearer(token))
    assert page.status_code == 200, page.text
    return Counter(m["data"]["reply_to"] for m in page.json()["messages"]
                   if m["from"] and m["from"]["username"] == "echo_bot")


@pytest.mark.slow
async def test_echo_bot_answers_and_recovers_after_a_server_restart(stack: dict[str, Any]) -> None:
    first = await asyncio.to_thread(stack["serve"])
    base_url, bot = stack["base_url"], stack["bot"]
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        await register(http, "Alice")
        token = (await login(http, "alice"))["access_token"]

    await bot.start()
    await bot.wait_for(r"connected as echo_bot \(connection 1\)")
    await bot.wait_for(r"subscribed to room:general")

    # 1. A user posts a command and receives the bot's reply on her own socket.
    alice = await WsClient.connect(base_url, token)
    await alice.request("subscribe", channel="room:general")
    hello = await alice.request("publish", channel="room:general", data={"text": "!echo hello"})
    assert hello["ok"], hello
    while True:
        push = await alice.push("message", timeout=10)
        if push["from"]["username"] == "echo_bot":
            break
    assert push["data"] == {"text": "hello", "reply_to": hello["offset"]}

    # 2. The server stops (SIGTERM: drain, close code 1012). The bot notices and starts reconnecting;
    #    it is then held (SIGSTOP) so the commands below are certainly posted while it is away.
    first.signal(signal.SIGTERM)
    assert await alice.close_code(timeout=10) == 1012
    await bot.wait_for(r"disconnected: 1012")
    assert await asyncio.to_thread(first.wait, 15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    bot.signal(signal.SIGSTOP)
    await alice.close()

    await asyncio.to_thread(stack["serve"])  # same port, same database
    posted = []
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        for text in ("!echo one", "just chatting", "!echo two"):
            response = await http.post("/api/channels/room:general/messages", json={"data": {"text": text}},
                                       headers=bearer(token))
            assert response.status_code == 201, response.text
            posted.append(response.json()["offset"])
    one, chat, two = posted
    bot.signal(signal.SIGCONT)

    # 3. It reconnected by itself (the same process, a second connection) and recovered the gap.
    await bot.wait_for(r"connected as echo_bot \(connection 2\)")
    await bot.wait_for(r"answered #\d+", count=3)

    # 4. A command posted after the reconnect is answered live.
    alice = await WsClient.connect(base_url, token)
    await alice.request("subscribe", channel="room:general")
    three = await alice.request("publish", channel="room:general", data={"text": "!echo three"})
    while True:
        push = await alice.push("message", timeout=10)
        if push["from"]["username"] == "echo_bot":
            break
    assert push["data"] == {"text": "three", "reply_to": three["offset"]}
    await alice.close()

    await asyncio.sleep(0.5)  # room for a (wrong) second answer to show up
    assert bot.process is not None and bot.process.returncode is None, "the bot process exited"
    assert dict(bot.answers()) == {hello["offset"]: False, one: True, two: True, three["offset"]: False}
    assert len(bot.answers()) == 4, bot.lines
    assert not [line for line in bot.lines if "gap in" in line], bot.lines
    counted = await replies(base_url, token)
    assert counted == Counter({hello["offset"]: 1, one: 1, two: 1, three["offset"]: 1})
    assert chat not in counted


# --- in-process ----------------------------------------------------------------------------------
async def next_of(client: VonixClient, kind: type, timeout: float = 10.0) -> Any:
    async def find() -> Any:
        async for event in client:
            if isinstance(event, kind):
                return event
        raise AssertionError("the client stopped")

    return await asyncio.wait_for(find(), timeout)


async def account(server: AppServer, name: str, admin: bool = False) -> str:
    async with server.client() as http:
        await register(http, name)
        if admin:
            await make_admin(server, name.lower())
        return str((await login(http, name.lower()))["access_token"])


async def test_restart_recovers_rooms_and_reports_an_ephemeral_gap(sqlite_template: Path, tmp_path: Path) -> None:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), SECRET_KEY=SECRET)
    first = await AppServer(settings).start()
    reader_token, boss_token = await account(first, "Reader"), await account(first, "Boss", admin=True)
    client = VonixClient(first.base_url, reader_token, backoff=(0.05, 0.2))
    second = None
    try:
        await client.connect()
        for channel in ("room:general", "bot:news"):
            await client.subscribe(channel)
        boss = await WsClient.connect(first.base_url, boss_token)
        for channel in ("room:general", "bot:news"):
            await boss.request("publish", channel=channel, data={"text": "1"})
        got = [await next_of(client, Message), await next_of(client, Message)]
        assert {(m.channel, int(m.data["text"])) for m in got} == {("room:general", 1), ("bot:news", 1)}
        await boss.close()

        await first.stop()  # in-process history is gone: bot:news starts a new epoch
        assert (await next_of(client, Disconnected)).code == 1012
        second = await AppServer(settings, port=first.port).start()
        assert (await next_of(client, Connected)).reconnected
        gap = await next_of(client, Gap)  # room:general recovered (nothing missed); bot:news cannot
        news = next(m for m in got if m.channel == "bot:news")
        assert (gap.channel, gap.since, gap.offset) == ("bot:news", news.offset, 0) and gap.epoch != news.epoch
        boss = await WsClient.connect(second.base_url, boss_token)
        for channel in ("room:general", "bot:news"):
            await boss.request("publish", channel=channel, data={"text": "2"})
        after = [await next_of(client, Message), await next_of(client, Message)]
        assert {(m.channel, int(m.data["text"])) for m in after} == {("room:general", 2), ("bot:news", 2)}
        await boss.close()
    finally:
        await client.close()
        if second is not None:
            await second.stop()
        await first.stop()


async def test_a_refused_token_stops_the_client(sqlite_template: Path, tmp_path: Path) -> None:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path))
    async with AppServer(settings) as server:
        client = VonixClient(server.base_url, "vxb_not-a-real-token", backoff=(0.05, 0.1))
        with pytest.raises(Closed) as raised:
            await asyncio.wait_for(client.connect(), 10)
        assert raised.value.close_code == 4001
        with pytest.raises(Closed):
            await anext(aiter(client))
        await client.close()


async def test_an_expired_token_is_refreshed_and_the_stream_goes_on(sqlite_template: Path, tmp_path: Path) -> None:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), ACCESS_TOKEN_TTL=2)
    async with AppServer(settings) as server:
        token = await account(server, "Shorty")
        await account(server, "Writer")
        calls = []

        async def fresh_token() -> str:
            calls.append(1)
            async with server.client() as http:
                return str((await login(http, "shorty"))["access_token"])

        client = VonixClient(server.base_url, token, refresh_token=fresh_token, backoff=(0.05, 0.2))
        try:
            await client.connect()
            await client.subscribe("room:general")
            closed = await next_of(client, Disconnected, timeout=10)
            assert closed.code == 4100 and calls
            await next_of(client, Connected)
            async with server.client() as http:
                writer_token = (await login(http, "writer"))["access_token"]  # the first one expired too
                posted = await http.post("/api/channels/room:general/messages", json={"data": {"text": "after"}},
                                         headers=bearer(writer_token))
            assert posted.status_code == 201
            message = await next_of(client, Message)
            assert message.data == {"text": "after"}
        finally:
            await client.close()


async def test_a_slow_consumer_loses_nothing(sqlite_template: Path, tmp_path: Path) -> None:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), WS_PUBLISH_BURST=100)
    async with AppServer(settings) as server:
        reader_token, writer_token = await account(server, "Lazy"), await account(server, "Busy")
        client = VonixClient(server.base_url, reader_token, max_events=6, backoff=(0.05, 0.2))
        try:
            await client.connect()
            await client.subscribe("room:general")
            writer = await WsClient.connect(server.base_url, writer_token)
            for n in range(40):
                assert (await writer.request("publish", channel="room:general", data={"text": str(n)}))["ok"]
            await writer.close()
            await asyncio.sleep(0.3)  # the client's queue overflowed long ago
            got = [int((await next_of(client, Message)).data["text"]) for _ in range(40)]
            assert got == list(range(40))
            assert client.connections > 1  # it dropped the connection and recovered
        finally:
            await client.close()


async def test_the_client_edits_reacts_and_deletes_and_names_the_events(sqlite_template: Path, tmp_path: Path) -> None:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path))
    async with AppServer(settings) as server:
        client = VonixClient(server.base_url, await account(server, "Writer"), backoff=(0.05, 0.2))
        try:
            await client.connect()
            await client.subscribe("room:general")
            offset = await client.publish("room:general", {"text": "typo"})
            assert (await next_of(client, Message)).event is None
            edited = await client.edit("room:general", offset, "fixed")
            reacted = await client.react("room:general", offset, "👍")
            removed = await client.react("room:general", offset, "👍", on=False)
            deleted = await client.delete("room:general", offset)
            assert offset < edited < reacted < removed < deleted
            events = [await next_of(client, Message) for _ in range(4)]
            assert [(m.event, m.offset, m.data["target"]) for m in events] == [
                ("edit", edited, offset), ("reaction", reacted, offset), ("reaction", removed, offset),
                ("delete", deleted, offset)]
            assert events[0].data["text"] == "fixed" and events[2].data == {
                "type": "reaction", "target": offset, "emoji": "👍", "on": False, "count": 0}
        finally:
            await client.close()
