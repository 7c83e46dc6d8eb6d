"""The Discord bridge (issue 18, "Discord bridge") against a stand-in Discord the tests start.

The first test runs the real entry point, `vonix discord-bridge`, as a subprocess: messages, edits
and deletes both ways, escaping and mention translation, no loops, health in `/api/admin/stats`,
SIGTERM, and a restart that does not duplicate a re-delivered Discord message. The others run the
bridge in-process (same code, short timings) for rate limits, the circuit breaker and its bounded
queue, and gateway resumes. The health route is checked on both backends, across two replicas.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from server.auth.bots import create_bot
from server.bridges.discord import BridgeConfig, DiscordBridge
from server.bridges.discord_rest import DiscordRest
from server.bridges.health import BridgeHealth
from server.infra.breaker import BreakerPolicy
from tests.conftest import fresh_sqlite_url, make_settings
from tests.support.accounts import bearer, login, make_admin, register
from tests.support.appserver import AppServer
from tests.support.contract import assert_conforms
from tests.support.discord_standin import Call, DiscordStandin
from tests.support.live import replicas
from tests.support.wsclient import WsClient

ROOT = Path(__file__).resolve().parents[2]
ROOM = "room:general"
STEVE = {"id": "500000000000000001", "username": "steve_dc", "global_name": "Steve",
         "avatar": "0123456789abcdef0123456789abcdef"}
HEROBRINE = {"id": "500000000000000002", "username": "hb", "global_name": "Herobrine"}


# --- helpers ---------------------------------------------------------------------------------------
class Stack:
    def __init__(self, server: AppServer, standin: DiscordStandin, bot_token: str, tokens: dict[str, str]) -> None:
        self.server, self.standin, self.bot_token, self.tokens = server, standin, bot_token, tokens

    def config(self, **changes: Any) -> BridgeConfig:
        values: dict[str, Any] = {
            "room": ROOM, "channel_id": self.standin.channel_id, "bot_token": self.standin.bot_token,
            "webhook_url": self.standin.webhook_url, "api_url": self.standin.api_url,
            "gateway_url": self.standin.gateway_url, "server_url": self.server.base_url,
            "public_url": self.server.base_url, "bridge_token": self.bot_token}
        values.update(changes)
        return BridgeConfig(**values)

    async def member(self, name: str) -> WsClient:
        ws = await WsClient.connect(self.server.base_url, self.tokens[name])
        assert (await ws.request("subscribe", channel=ROOM))["ok"]
        return ws

    async def stats(self) -> dict[str, Any]:
        async with self.server.client() as http:
            response = await http.get("/api/admin/stats", headers=bearer(self.tokens["boss"]))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def wait_health(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            discord = (await self.stats())["bridges"].get("discord")
            if discord is not None and predicate(discord):
                return discord  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise AssertionError(f"health never matched; last: {discord}")
            await asyncio.sleep(0.1)


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (40, 160, 90)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def stack(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), MEDIA_DIR=str(tmp_path / "m"))
    async with AppServer(settings) as server:
        tokens = {}
        async with server.client() as http:
            for name in ("Alice", "Bob", "Boss"):
                await register(http, name)
            await make_admin(server, "boss")
            for name in ("alice", "bob", "boss"):
                tokens[name] = str((await login(http, name))["access_token"])
            alice = bearer(tokens["alice"])
            assert (await http.patch("/api/users/me", json={"display_name": "Alice Liddell"},
                                     headers=alice)).status_code == 200
            assert (await http.put("/api/users/me/avatar", content=png(),
                                   headers={**alice, "Content-Type": "image/png"})).status_code == 200
            assert (await http.patch("/api/users/me", json={"display_name": "Bobby Tables"},
                                     headers=bearer(tokens["bob"]))).status_code == 200
        bot = await create_bot(server.resources.db, "discord_bridge", None, None)
        standin = await DiscordStandin(heartbeat_interval_ms=500).start()
        try:
            yield Stack(server, standin, bot.token, tokens)
        finally:
            await standin.stop()


async def bridge_task(bridge: DiscordBridge) -> asyncio.Task[None]:
    task = asyncio.create_task(bridge.run())
    return task


async def stop_bridge(bridge: DiscordBridge, task: asyncio.Task[None]) -> None:
    bridge.stop()
    await asyncio.wait_for(task, 15)


async def from_bot(ws: WsClient, timeout: float = 10.0) -> dict[str, Any]:
    """The next message push the bridge's bot published."""
    while True:
        push = await ws.push("message", timeout=timeout)
        if push["from"] and push["from"]["username"] == "discord_bridge":
            return push


def posts(standin: DiscordStandin) -> list[Call]:
    return [c for c in standin.webhook_calls("POST")]


# --- the real entry point ------------------------------------------------------------------------
class BridgeProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BridgeProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen([sys.executable, "-m", "server.cli", "discord-bridge"], env=self.env,
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        return self

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError("the bridge did not stop on SIGTERM") from None


async def test_bridge_process_mirrors_both_ways_and_survives_a_restart(stack: Stack, tmp_path: Path) -> None:
    standin, server = stack.standin, stack.server
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VONIX_ENV": "test", "LOG_LEVEL": "INFO", "LOG_FORMAT": "json",
           "DATABASE_URL": f"sqlite:///{tmp_path}/unused.db", "BRIDGE_SERVER_URL": server.base_url,
           "BRIDGE_BOT_TOKEN": stack.bot_token, "DISCORD_BRIDGE_ROOM": "general", **standin.env()}
    env.pop("REDIS_URL", None)
    env.pop("PUBLIC_URL", None)
    log_path = tmp_path / "bridge.log"
    bridge = BridgeProcess(env, log_path).start()
    try:
        await standin.wait_connected(20)
        assert standin.identifies[0]["intents"] == (1 << 0) | (1 << 9) | (1 << 15)  # guilds, messages, content
        health = await stack.wait_health(lambda h: h["state"] == "ok" and h["vonix"] == "connected", 20)
        assert health["gateway"] == "connected" and health["breaker"] == "closed" and health["stale"] is False
        alice = await stack.member("alice")

        # Vonix -> Discord: the author's name and avatar, content escaped, mentions inert.
        sent = await alice.request("publish", channel=ROOM, data={
            "text": "hi @bob **not bold** @everyone <@123> see https://x.test/a_b_c"})
        [call] = await standin.wait_for_calls(lambda c: c.method == "POST" and c.status == 200)
        assert call.query == "wait=true"
        assert call.json["username"] == "Alice Liddell"
        assert call.json["avatar_url"].startswith(server.base_url + "/media/avatars/")
        assert call.json["allowed_mentions"] == {"parse": []}
        assert call.json["content"] == ("hi @Bobby Tables \\*\\*not bold\\*\\* @\u200beveryone \\<@123\\> "
                                        "see https://x.test/a_b_c")
        discord_id = next(iter(standin.messages))

        # Discord -> Vonix: a member sees the message with `via`, mentions translated.
        first = standin.message("hey <@500000000000000002> see <#800000000000000001> <:creeper:42>",
                                author=STEVE, mentions=[HEROBRINE])
        await standin.dispatch("MESSAGE_CREATE", first)
        push = await from_bot(alice)
        assert push["data"] == {"text": "hey @Herobrine see #minecraft :creeper:", "via": {
            "source": "discord", "name": "Steve",
            "avatar": "https://cdn.discordapp.com/avatars/500000000000000001/0123456789abcdef0123456789abcdef.png"
                      "?size=128"}}
        steve_offset = push["offset"]

        # No loops: our webhook's echo and other bots are ignored; the bridge's own publish is not sent back.
        echo = standin.message("hi", author={"id": standin.webhook_id, "username": "Alice Liddell", "bot": True},
                               message_id=discord_id, webhook_id=standin.webhook_id)
        await standin.dispatch("MESSAGE_CREATE", echo)
        await standin.dispatch("MESSAGE_CREATE", standin.message("beep", author={"id": "42", "username": "b",
                                                                                    "bot": True}))
        await standin.dispatch("MESSAGE_CREATE", standin.message("marker", author=STEVE))
        assert (await from_bot(alice))["data"]["text"] == "marker"
        await asyncio.sleep(0.3)
        assert len(posts(standin)) == 1

        # Edits and deletes, Vonix -> Discord.
        assert (await alice.request("edit", channel=ROOM, offset=sent["offset"], data={"text": "hi _all_"}))["ok"]
        [patch] = await standin.wait_for_calls(lambda c: c.method == "PATCH")
        assert patch.path.endswith(f"/messages/{discord_id}") and patch.json["content"] == "hi \\_all\\_"
        assert standin.messages[discord_id]["content"] == "hi \\_all\\_"
        assert (await alice.request("delete", channel=ROOM, offset=sent["offset"]))["ok"]
        await standin.wait_for_calls(lambda c: c.method == "DELETE")
        assert discord_id not in standin.messages

        # Edits and deletes, Discord -> Vonix.
        await standin.dispatch("MESSAGE_UPDATE", {**first, "content": "edited on discord"})
        edit = await from_bot(alice)
        assert edit["data"] == {"type": "edit", "target": steve_offset, "text": "edited on discord"}
        await standin.dispatch("MESSAGE_DELETE", {"id": first["id"], "channel_id": standin.channel_id})
        assert (await from_bot(alice))["data"] == {"type": "delete", "target": steve_offset}

        again = standin.message("said once", author=STEVE)
        await standin.dispatch("MESSAGE_CREATE", again)
        said = await from_bot(alice)
        assert said["data"]["text"] == "said once"
        reply = standin.message("a reply", author=STEVE, message_reference={"message_id": again["id"]})
        await standin.dispatch("MESSAGE_CREATE", reply)
        assert (await from_bot(alice))["data"]["reply_to"] == said["offset"]

        # SIGTERM: a clean exit, the gateway closed with 1000, health says it stopped.
        assert await bridge.stop() == 0
        assert standin.close_codes == [1000]
        health = await stack.wait_health(lambda h: h["gateway"] == "stopped")
        assert health["state"] == "down"

        # A restarted bridge gets the same Discord message again: Vonix keeps it once (the nonce).
        bridge = BridgeProcess(env, log_path).start()
        await stack.wait_health(lambda h: h["state"] == "ok" and h["vonix"] == "connected", 20)
        assert len(standin.identifies) == 2
        await standin.dispatch("MESSAGE_CREATE", again)
        await standin.dispatch("MESSAGE_CREATE", standin.message("after restart", author=STEVE))
        while (await from_bot(alice))["data"].get("text") != "after restart":
            pass
        async with server.client() as http:
            page = await http.get(f"/api/channels/{ROOM}/messages", params={"since": 0, "limit": 200},
                                  headers=bearer(stack.tokens["alice"]))
        texts = [m["data"].get("text") for m in page.json()["messages"] if m.get("data")]
        assert texts.count("said once") == 1 and texts.count("after restart") == 1
        await alice.close()
    finally:
        await bridge.stop()
    logged = log_path.read_text()
    assert "discord_bridge_started" in logged
    for secret in (stack.bot_token, standin.bot_token, standin.webhook_token):
        assert secret not in logged


# --- in-process: rate limits, breaker, gateway ---------------------------------------------------
async def test_a_429_is_waited_out_and_order_is_kept(stack: Stack) -> None:
    standin = stack.standin
    bridge = DiscordBridge(stack.config(), health_interval=0.5)
    task = await bridge_task(bridge)
    try:
        await standin.wait_connected()
        alice = await stack.member("alice")
        standin.rate_limit_next(1, 0.6)
        for n in range(4):
            assert (await alice.request("publish", channel=ROOM, data={"text": f"m{n}"}))["ok"]
        done = await standin.wait_for_calls(lambda c: c.method == "POST" and c.status == 200, count=4)
        limited = [c for c in standin.calls if c.status == 429]
        assert len(limited) == 1 and limited[0].json["content"] == "m0"
        assert done[0].json["content"] == "m0" and done[0].at - limited[0].at >= 0.55  # after retry_after
        assert [c.json["content"] for c in done] == ["m0", "m1", "m2", "m3"]
        assert bridge.rest.rate_limited == 1

        # A game bridge's relayed message goes out under "[game] Steve" with the avatar it gave.
        game = await create_bot(stack.server.resources.db, "game_bridge", None, None)
        relay = await WsClient.connect(stack.server.base_url, game.token)
        via = {"source": "game", "name": "Steve", "avatar": "https://mc-heads.net/avatar/steve/64"}
        assert (await relay.request("publish", channel=ROOM, data={"text": "gg", "via": via}))["ok"]
        calls = await standin.wait_for_calls(lambda c: c.method == "POST" and c.status == 200, count=5)
        assert calls[4].json["username"] == "[game] Steve" and calls[4].json["avatar_url"] == via["avatar"]
        await relay.close()
        await alice.close()
    finally:
        await stop_bridge(bridge, task)


async def test_a_spent_bucket_makes_the_next_call_wait(stack: Stack) -> None:
    standin = stack.standin
    standin.remaining, standin.reset_after = 0, 0.5
    rest = DiscordRest()
    try:
        url = standin.webhook_url + "?wait=true"
        first = rest.submit("POST webhook", "POST", url, {"content": "one"})
        second = rest.submit("POST webhook", "POST", url, {"content": "two"})
        await asyncio.gather(first, second)
        one, two = standin.webhook_calls("POST")
        assert (one.json["content"], two.json["content"]) == ("one", "two") and two.at - one.at >= 0.45
    finally:
        await rest.close()


async def test_breaker_opens_queue_is_bounded_and_health_says_so(stack: Stack) -> None:
    standin = stack.standin
    bridge = DiscordBridge(stack.config(), health_interval=0.3, max_queue=3,
                           breaker=BreakerPolicy(failure_threshold=3, reset_timeout=1.0, call_timeout=2.0))
    task = await bridge_task(bridge)
    try:
        await standin.wait_connected()
        await stack.wait_health(lambda h: h["state"] == "ok")
        alice = await stack.member("alice")
        standin.down = True
        for n in range(5):
            assert (await alice.request("publish", channel=ROOM, data={"text": f"q{n}"}))["ok"]
        health = await stack.wait_health(lambda h: h["breaker"] == "open" and h["dropped"] == 2)
        assert health["state"] == "degraded" and health["queue"] == 3 and health["stale"] is False
        assert health["last_error"] == "POST webhook: HTTP 503"
        await asyncio.sleep(1.5)
        # Open: nothing is attempted but one trial call per reset_timeout (1 s) once half-open. Not
        # "no call within 0.5 s of seeing it open": a loaded machine sees it late, near the trial.
        webhook = [c.at for c in standin.calls if c.method == "POST" and c.status == 503]
        retries = webhook[3:]  # after the three failures that opened it
        assert retries and all(b - a >= 0.9 for a, b in itertools.pairwise(retries)), webhook
        assert retries[0] - webhook[2] >= 0.9, webhook
        standin.down = False
        done = await standin.wait_for_calls(lambda c: c.method == "POST" and c.status == 200, count=3)
        assert [c.json["content"] for c in done] == ["q0", "q1", "q2"]  # q3 and q4 were dropped
        health = await stack.wait_health(lambda h: h["breaker"] == "closed" and h["queue"] == 0)
        assert health["state"] == "ok"
        await alice.close()
    finally:
        await stop_bridge(bridge, task)


async def test_gateway_drop_and_zombie_connection_resume(stack: Stack) -> None:
    standin = stack.standin
    bridge = DiscordBridge(stack.config(), health_interval=0.3, gateway_backoff=(0.05, 0.2))
    task = await bridge_task(bridge)
    try:
        await standin.wait_connected()
        alice = await stack.member("alice")
        await standin.dispatch("MESSAGE_CREATE", standin.message("before", author=STEVE))
        assert (await from_bot(alice))["data"]["text"] == "before"

        # Dropped by Discord; a message sent meanwhile is replayed on RESUME.
        await standin.drop(4000)
        standin.queue_for_resume("MESSAGE_CREATE", standin.message("while away", author=STEVE))
        assert (await from_bot(alice))["data"]["text"] == "while away"
        assert len(standin.resumes) == 1 and len(standin.identifies) == 1
        assert standin.resumes[0]["session_id"] == bridge.gateway.session_id and standin.resumes[0]["seq"] >= 2

        # Heartbeats stop being acknowledged: the bridge closes the zombie and resumes.
        standin.ack_heartbeats = False
        await stack.wait_health(lambda h: h["gateway"] != "connected", 5)
        standin.ack_heartbeats = True
        await stack.wait_health(lambda h: h["gateway"] == "connected" and h["state"] == "ok", 5)
        assert len(standin.resumes) >= 2 and len(standin.identifies) == 1
        await standin.dispatch("MESSAGE_CREATE", standin.message("after", author=STEVE))
        assert (await from_bot(alice))["data"]["text"] == "after"
        await alice.close()
    finally:
        await stop_bridge(bridge, task)


async def test_without_a_webhook_the_bot_posts_with_rest(stack: Stack) -> None:
    standin = stack.standin
    bridge = DiscordBridge(stack.config(webhook_url=None), health_interval=0.5)
    task = await bridge_task(bridge)
    try:
        await standin.wait_connected()
        alice = await stack.member("alice")
        assert (await alice.request("publish", channel=ROOM, data={"text": "via *rest*"}))["ok"]
        [call] = await standin.wait_for_calls(lambda c: c.path.endswith("/messages") and c.method == "POST")
        assert call.path == f"/api/v10/channels/{standin.channel_id}/messages"
        assert call.json == {"content": "**Alice Liddell**: via \\*rest\\*", "allowed_mentions": {"parse": []}}
        # The bot's own REST message comes back through the gateway: ignored (author is the bridge's user).
        own = standin.message("**Alice Liddell**: via rest", author={"id": standin.bot_user_id, "username": "x"})
        await standin.dispatch("MESSAGE_CREATE", own)
        real = standin.message("real", author=STEVE)
        await standin.dispatch("MESSAGE_CREATE", real)
        relayed = await from_bot(alice)
        assert relayed["data"]["text"] == "real"
        # A moderator deletes the relayed message in Vonix: the bot deletes it on Discord too.
        boss = await stack.member("boss")
        assert (await boss.request("delete", channel=ROOM, offset=relayed["offset"]))["ok"]
        [gone] = await standin.wait_for_calls(lambda c: c.method == "DELETE")
        assert gone.path == f"/api/v10/channels/{standin.channel_id}/messages/{real['id']}"
        await boss.close()
        await alice.close()
    finally:
        await stop_bridge(bridge, task)


async def test_a_refused_bot_token_stops_the_bridge_with_a_reason(stack: Stack) -> None:
    bridge = DiscordBridge(stack.config(bridge_token="vxb_" + "x" * 43), vonix_backoff=(0.05, 0.1))
    await asyncio.wait_for(bridge.run(), 15)
    assert bridge.failure is not None and "4001" in bridge.failure


# --- the health route ----------------------------------------------------------------------------
async def test_health_route_takes_bot_reports_and_stats_show_them_on_every_replica(
        backend: dict[str, Any]) -> None:
    async with replicas(backend) as (a, b):
        async with a.client() as http:
            await register(http, "Member")
            await make_admin(a, "member")
            member = bearer(str((await login(http, "member"))["access_token"]))
            bot = await create_bot(a.resources.db, "bridge_bot", None, None)
            report = {"state": "degraded", "gateway": "resuming", "queue": 2, "breaker": "closed",
                      "last_error": "gateway closed 4000"}
            refused = await http.put("/api/bridges/discord/health", json=report, headers=member)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "bots_only"
            assert (await http.put("/api/bridges/discord/health", json=report)).status_code == 401
            bad = await http.put("/api/bridges/discord/health", json={**report, "state": "fine", "token": "x"},
                                 headers=bearer(bot.token))
            assert bad.status_code == 422
            assert {d["field"] for d in bad.json()["error"]["details"]} >= {"state", "token"}
            ok = await http.put("/api/bridges/discord/health", json=report, headers=bearer(bot.token))
            assert ok.status_code == 200, ok.text
            stored = await assert_conforms(http, ok, "PUT", "/api/bridges/discord/health")
            assert stored["ok"] is True and abs(stored["reported_at"] - time.time()) < 60
        async with b.client() as http:
            stats = (await http.get("/api/admin/stats", headers=member)).json()
        discord = stats["bridges"]["discord"]
        assert {k: discord[k] for k in report} == report
        assert discord["bot"] == "bridge_bot" and discord["stale"] is False
        later = await BridgeHealth(b.resources, clock=lambda: time.time() + 61).get("discord")
        assert later is not None and later["stale"] is True


async def test_only_the_configured_bridge_bot_reports_health(backend: dict[str, Any]) -> None:
    """With BRIDGE_BOT_TOKEN known to the server (compose shares it), another bot cannot pose as the
    bridge; without it, any bot may (the test above)."""
    from server.auth.tokens import hash_secret
    from server.db.tables import bot_tokens
    from server.db.types import utcnow

    bridge_token = "vxb_" + "b" * 43
    async with replicas(backend, BRIDGE_BOT_TOKEN=bridge_token) as (a, _b):
        bridge = await create_bot(a.resources.db, "bridge_bot", None, None)
        await a.resources.db.execute("bot_tokens.insert", bot_tokens.insert().values(
            bot_id=bridge.bot_id, token_hash=hash_secret(bridge_token), prefix=bridge_token[:8], created_at=utcnow()))
        other = await create_bot(a.resources.db, "other_bot", None, None)
        report = {"state": "ok", "gateway": "connected", "queue": 0, "breaker": "closed"}
        async with a.client() as http:
            posing = await http.put("/api/bridges/discord/health", json=report, headers=bearer(other.token))
            assert posing.status_code == 403 and posing.json()["error"]["code"] == "not_the_bridge"
            ok = await http.put("/api/bridges/discord/health", json=report, headers=bearer(bridge_token))
            assert ok.status_code == 200, ok.text
