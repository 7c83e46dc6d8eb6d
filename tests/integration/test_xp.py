"""XP, levels, leaderboard and ranks (issue 17, the part the friends of issue 16 already award)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.accounts import login, make_admin
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.live import listen, personal, replicas, token_of
from tests.support.wsclient import WsClient


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend, RATE_LIMIT_ACTIONS="friend_request=100/3600") as both:
        yield both


async def befriend(client: httpx.AsyncClient, a: dict[str, Any], b: str, b_who: dict[str, Any], a_name: str) -> None:
    assert (await client.post("/api/friends", json={"username": b}, headers=a["headers"])).is_success
    assert (await client.post(f"/api/friends/{a_name}/accept", headers=b_who["headers"])).is_success


async def xp_of(client: httpx.AsyncClient, who: dict[str, Any], name: str) -> dict[str, Any]:
    return dict((await client.get(f"/api/users/{name}", headers=who["headers"])).json())


async def test_friendships_award_once_level_up_live_and_rank_on_the_leaderboard(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        names = ["alice", "bob", "carol", "dave"]
        u = await people(client, *names)
        alice = u["alice"]
        ws = await listen(two, alice)  # alice's tab on the other replica
        try:
            await befriend(client, alice, "bob", u["bob"], "alice")
            gains = [await personal(ws, "xp") for _ in range(2)]
            assert sorted((g["action"], g["gained"]) for g in gains) == [("first_friend", 30), ("friend_accepted", 10)]
            profile = await xp_of(client, alice, "alice")
            assert (profile["xp"], profile["level"]) == (40, 1)
            assert profile["progress"] == {"level": 1, "title": "Newcomer", "colour": "#9ca3af", "xp": 40,
                                           "level_xp": 0, "next_level_xp": 50}
            # the same friend again after removing him: no second award; a new friend: +10 and level 2
            assert (await client.delete("/api/friends/bob", headers=alice["headers"])).status_code == 204
            await befriend(client, alice, "bob", u["bob"], "alice")
            await befriend(client, alice, "carol", u["carol"], "alice")
            level_up = await personal(ws, "level_up")
            assert level_up == {"type": "level_up", "level": 2, "title": "Newcomer", "colour": "#9ca3af"}
            stored = await personal(ws, "notification")
            assert stored["notification"]["kind"] == "level_up"
            assert stored["notification"]["title"] == "You reached level 2"
            listed = (await client.get("/api/notifications", headers=alice["headers"])).json()
            assert any(n["kind"] == "level_up" and n["url"] == "/leaderboard" for n in listed["notifications"]), listed
            assert (await xp_of(client, u["bob"], "alice"))["xp"] == 50
        finally:
            await ws.close()

        for period in ("all", "week"):
            board = (await client.get("/api/leaderboard", params={"period": period}, headers=alice["headers"])).json()
            ranking = [(e["user"]["username"], e["xp"]) for e in board["entries"]]
            assert ranking[0] == ("alice", 50) and sorted(ranking[1:]) == [("bob", 40), ("carol", 40)], ranking
            assert [e["position"] for e in board["entries"]] == [1, 2, 3]
        redis = one.resources.redis
        if redis is not None:  # Redis lost the sorted sets: rebuilt from the table
            await redis.commands.flushall()
            board = (await client.get("/api/leaderboard", headers=alice["headers"])).json()
            assert sorted((e["user"]["username"], e["xp"]) for e in board["entries"]) == [
                ("alice", 50), ("bob", 40), ("carol", 40)]
            assert await redis.commands.exists("vonix:lb:all")
        assert (await client.get("/api/leaderboard", params={"period": "year"},
                                 headers=alice["headers"])).status_code == 400


async def test_daily_caps_stop_farming(app_server: AppServer) -> None:
    async with app_server.client() as client:
        names = [f"friend{n:02d}" for n in range(12)]
        u = await people(client, "farmer", *names)
        farmer = u["farmer"]
        xp = app_server.resources.xp
        assert xp is not None
        granted = [await xp.award(u["farmer"]["id"], "friend_accepted", f"friend:{n}") for n in range(12)]
        assert granted == [10] * 10 + [0, 0]  # 100 a day from new friends
        assert await xp.award(u["farmer"]["id"], "friend_accepted", "friend:0") is None  # already made
        assert (await xp_of(client, farmer, "farmer"))["xp"] == 100
        # losses are never capped
        assert await xp.award(u["farmer"]["id"], "moderator_removal", "message:1") == -50
        assert (await xp_of(client, farmer, "farmer"))["xp"] == 50


async def test_admins_create_and_assign_ranks(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "root", "steve")
        await make_admin(app_server, "root")
        root, steve = u["root"], u["steve"]
        created = await client.post("/api/admin/ranks", json={"name": "Diamond", "colour": "#3BC9DB", "badge": "💎"},
                                    headers=root["headers"])
        assert created.status_code == 201, created.text
        rank = created.json()
        assert rank == {"id": rank["id"], "name": "Diamond", "colour": "#3bc9db", "badge": "💎"}
        assert (await client.post("/api/admin/ranks", json={"name": "Diamond", "colour": "#000000"},
                                  headers=root["headers"])).status_code == 409
        for body in ({"name": "", "colour": "#000000"}, {"name": "x", "colour": "red"},
                     {"name": "bad\u0007", "colour": "#000000"}):
            assert (await client.post("/api/admin/ranks", json=body, headers=root["headers"])).status_code == 422
        assert (await client.post("/api/admin/ranks", json={"name": "Gold", "colour": "#ffd700"},
                                  headers=steve["headers"])).status_code == 403
        assigned = await client.put("/api/admin/users/steve/rank", json={"rank_id": rank["id"]},
                                    headers=root["headers"])
        assert assigned.status_code == 200
        profile = (await client.get("/api/users/steve", headers=steve["headers"])).json()
        assert profile["rank"] == {"name": "Diamond", "colour": "#3bc9db", "badge": "💎"}
        assert (await client.put("/api/admin/users/steve/rank", json={"rank_id": 999},
                                 headers=root["headers"])).status_code == 404
        assert (await client.put("/api/admin/users/steve/rank", json={"rank_id": None},
                                 headers=root["headers"])).status_code == 200
        assert (await client.get("/api/users/steve", headers=steve["headers"])).json()["rank"] is None
        assert [r["name"] for r in (await client.get("/api/ranks", headers=steve["headers"])).json()["ranks"]] == [
            "Diamond"]


async def test_a_rank_shows_beside_the_name_in_chat_live_and_in_history(pair: tuple[AppServer, AppServer]) -> None:
    """Assigned ranks reach chat: the sender of a live message (from the next connection: the
    cached identity is dropped on every replica) and the senders of stored history."""
    one, two = pair
    async with one.client() as client:
        u = await people(client, "root", "steve", "alex")
        await make_admin(one, "root")
        rank = (await client.post("/api/admin/ranks", json={"name": "Gold", "colour": "#FFD700", "badge": "G"},
                                  headers=u["root"]["headers"])).json()
        assert (await client.put("/api/admin/users/steve/rank", json={"rank_id": rank["id"]},
                                 headers=u["root"]["headers"])).status_code == 200
        gold = {"name": "Gold", "colour": "#ffd700", "badge": "G"}
        watcher = await WsClient.connect(one.base_url, token_of(u["alex"]))
        steve_ws = await WsClient.connect(two.base_url, token_of(u["steve"]))
        try:
            assert (await watcher.request("subscribe", channel="room:general"))["ok"]
            assert (await steve_ws.request("publish", channel="room:general", data={"text": "gg"}))["ok"]
            push = await watcher.push("message", timeout=5)
            assert push["from"] == {"id": u["steve"]["id"], "username": "steve", "rank": gold}
            reply = await watcher.request("history", channel="room:general", limit=10)
            assert reply["messages"][-1]["from"]["rank"] == gold
            # alex has no rank: the sender carries none
            assert (await watcher.request("publish", channel="room:general", data={"text": "hi"}))["ok"]
            mine = await watcher.push("message", timeout=5)
            assert mine["from"] == {"id": u["alex"]["id"], "username": "alex"}
        finally:
            await watcher.close()
            await steve_ws.close()


async def test_the_first_sign_in_of_the_day_earns_the_daily_login_once(backend: dict[str, Any]) -> None:
    """XP_DAILY_LOGIN on: signing in (and refreshing, and signing in again) the same day is +5 once."""
    async with AppServer(make_settings(**backend, XP_DAILY_LOGIN="true")) as server, server.client() as client:
        u = await people(client, "steve")  # registers and signs in
        for _ in range(3):
            await login(client, "steve")
        deadline = asyncio.get_running_loop().time() + 5
        while (profile := await xp_of(client, u["steve"], "steve"))["xp"] == 0:
            assert asyncio.get_running_loop().time() < deadline, "no daily-login XP"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a second award would have landed by now
        assert (await xp_of(client, u["steve"], "steve"))["xp"] == profile["xp"] == 5
        rows = await server.resources.db.fetch_all("t", "SELECT action, amount FROM xp_transactions")
        assert [(r["action"], r["amount"]) for r in rows] == [("daily_login", 5)]


async def test_daily_login_streaks_and_a_completed_profile(app_server: AppServer) -> None:
    from datetime import UTC, datetime, timedelta

    async with app_server.client() as client:
        u = await people(client, "steve")
        steve = u["steve"]
        xp = app_server.resources.xp
        assert xp is not None
        start = datetime(2026, 12, 1, 12, tzinfo=UTC)
        # day 1: +5; days 2-4: +5 plus 2 per streak day; the same day again: nothing; a gap resets
        gains = [await xp.daily_login(steve["id"], start + timedelta(days=n)) for n in (0, 1, 2, 3, 3, 5)]
        assert gains == [5, 7, 9, 11, 0, 5]
        assert await xp.daily_login(steve["id"], start + timedelta(days=40)) == 5
        long = [await xp.daily_login(steve["id"], start + timedelta(days=100 + n)) for n in range(30)]
        assert long[-1] == 5 + 50  # the bonus stops growing at +50
        before = (await xp_of(client, steve, "steve"))["xp"]
        # a completed profile: display name, bio and a picture (or a linked Minecraft account)
        await client.patch("/api/users/me", json={"bio": "miner"}, headers=steve["headers"])
        assert (await xp_of(client, steve, "steve"))["xp"] == before  # no picture yet
        from server.db.queries import users as user_queries

        await user_queries.update(app_server.resources.db, steve["id"], minecraft_uuid="0" * 32,
                                  minecraft_username="Steve")
        await client.patch("/api/users/me", json={"bio": "miner and builder"}, headers=steve["headers"])
        await client.patch("/api/users/me", json={"bio": "miner, builder"}, headers=steve["headers"])
        assert (await xp_of(client, steve, "steve"))["xp"] == before + 25  # once
