"""Notifications: mentions, replies and DMs create one stored notification each, live on
`user:<id>`, listed newest first, marked read; only readers of a room are notified."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.accounts import PASSWORD, bearer, login, register
from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.wsclient import WsClient


async def inbox(client: httpx.AsyncClient, who: dict[str, Any], count: int, **params: Any) -> dict[str, Any]:
    """The notification list once it holds `count` items (fan-out runs after the publish returns)."""
    deadline = time.monotonic() + 5
    while True:
        response = await client.get("/api/notifications", params=params, headers=who["headers"])
        assert response.status_code == 200, response.text
        body = response.json()
        if len(body["notifications"]) >= count or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_mentions_replies_and_dms_notify_the_right_people_once(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob", "carol", "dave")
        first = await say(client, u["alice"], "room:general",
                          {"text": "hi @bob and @Carol, @alice, @nobody, email@bob.com @bob"})
        bob = await inbox(client, u["bob"], 1)
        assert [(n["kind"], n["channel"], n["offset"]) for n in bob["notifications"]] == [
            ("mention", "room:general", first)]
        note = bob["notifications"][0]
        assert note["title"] == "alice mentioned you in #general"
        assert note["url"] == f"/rooms/general#m{first}"
        assert note["actor"] == {"id": u["alice"]["id"], "username": "alice"}
        assert note["body"].startswith("hi @bob") and note["read"] is False and bob["unread"] == 1
        assert len((await inbox(client, u["carol"], 1))["notifications"]) == 1

        # A reply that also mentions the author gives one notification, of the stronger kind.
        reply = await say(client, u["bob"], "room:general", {"text": "thanks @alice", "reply_to": first})
        alice = await inbox(client, u["alice"], 1)
        assert [(n["kind"], n["offset"]) for n in alice["notifications"]] == [("reply", reply)]
        assert alice["notifications"][0]["title"] == "bob replied to you in #general"

        dm = (await client.post("/api/dms", json={"username": "bob"}, headers=u["carol"]["headers"])).json()["channel"]
        offset = await say(client, u["carol"], dm, {"text": "psst @dave"})
        bob = await inbox(client, u["bob"], 2)
        assert [(n["kind"], n["channel"], n["offset"]) for n in bob["notifications"]] == [
            ("dm", dm, offset), ("mention", "room:general", first)]  # newest first
        assert bob["notifications"][0]["url"] == "/dms/carol" and bob["unread"] == 2
        await asyncio.sleep(1)  # nothing else may arrive: dave is not in the DM, nobody notifies themselves
        assert (await inbox(client, u["dave"], 0))["notifications"] == []
        assert len((await inbox(client, u["alice"], 0))["notifications"]) == 1
        assert len((await inbox(client, u["carol"], 0))["notifications"]) == 1

        page = await inbox(client, u["bob"], 1, limit=1)
        assert len(page["notifications"]) == 1 and page["next_before"] == page["notifications"][0]["id"]
        rest = await inbox(client, u["bob"], 1, limit=1, before=page["next_before"])
        assert rest["notifications"][0]["kind"] == "mention"


async def test_a_repeated_nonce_notifies_once(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        one = await say(client, u["alice"], "room:general", {"text": "@bob once"}, nonce="n-1")
        two = await say(client, u["alice"], "room:general", {"text": "@bob once"}, nonce="n-1")
        assert one == two
        await asyncio.sleep(1)  # a second notification would be there by now
        assert len((await inbox(client, u["bob"], 0))["notifications"]) == 1


async def test_private_room_mentions_reach_only_members(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        created = await client.post("/api/rooms", json={"name": "staff", "private": True},
                                    headers=u["alice"]["headers"])
        assert created.status_code == 201
        await say(client, u["alice"], "room:staff", {"text": "secret for @bob"})
        await asyncio.sleep(1)  # one would be there by now
        assert (await inbox(client, u["bob"], 0))["notifications"] == []
        invited = await client.post("/api/rooms/staff/invite", json={"username": "bob"}, headers=u["alice"]["headers"])
        assert invited.status_code == 200
        offset = await say(client, u["alice"], "room:staff", {"text": "welcome @bob"})
        assert [n["offset"] for n in (await inbox(client, u["bob"], 1))["notifications"]] == [offset]


async def test_live_on_the_personal_channel_and_marking_read(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        token = u["bob"]["headers"]["Authorization"].split()[1]
        ws = await WsClient.connect(app_server.base_url, token)
        try:
            assert (await ws.request("subscribe", channel=f"user:{u['bob']['id']}"))["ok"]
            other = await ws.request("subscribe", channel=f"user:{u['alice']['id']}")
            assert other["ok"] is False and other["error"]["code"] == "forbidden"
            offset = await say(client, u["alice"], "room:general", {"text": "@bob look"})
            push = await ws.push("message")
            assert push["channel"] == f"user:{u['bob']['id']}"
            assert push["data"]["type"] == "notification" and push["data"]["unread"] == 1
            note = push["data"]["notification"]
            assert (note["kind"], note["offset"], note["read"]) == ("mention", offset, False)

            second = await say(client, u["alice"], "room:general", {"text": "@bob again"})
            assert (await ws.push("message"))["data"]["notification"]["offset"] == second
            listed = await inbox(client, u["bob"], 2)
            ids = [n["id"] for n in listed["notifications"]]

            marked = await client.post(f"/api/notifications/{ids[1]}/read", headers=u["bob"]["headers"])
            assert marked.json() == {"marked": [ids[1]], "unread": 1}
            read = (await ws.push("message"))["data"]
            assert read == {"type": "notifications_read", "ids": [ids[1]], "unread": 1}
            everything = await client.post("/api/notifications/read", json={"all": True}, headers=u["bob"]["headers"])
            assert everything.json() == {"marked": [ids[0]], "unread": 0}
            assert (await ws.push("message"))["data"] == {"type": "notifications_read", "ids": "all", "unread": 0}
            unread = await client.get("/api/notifications/unread", headers=u["bob"]["headers"])
            assert unread.json() == {"unread": 0}
            assert all(n["read"] for n in (await inbox(client, u["bob"], 2))["notifications"])

            # Someone else's notification is not found; bodies must say what to mark.
            foreign = await client.post(f"/api/notifications/{ids[0]}/read", headers=u["alice"]["headers"])
            assert foreign.status_code == 404
            for body in ({}, {"ids": [1], "all": True}, {"ids": ["x"]}):
                bad = await client.post("/api/notifications/read", json=body, headers=u["bob"]["headers"])
                assert bad.status_code == 422, body
            assert (await client.get("/api/notifications")).status_code == 401
        finally:
            await ws.close()


async def test_cookie_clients_need_the_csrf_header(app_server: AppServer) -> None:
    async with app_server.client() as client:
        await register(client, "alice")
        signed = await client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD, "mode": "cookie"})
        csrf = signed.json()["csrf_token"]
        assert (await client.get("/api/notifications")).status_code == 200
        refused = await client.post("/api/notifications/read", json={"all": True})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        done = await client.post("/api/notifications/read", json={"all": True}, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200


async def test_dm_list_and_read_markers(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        dm = (await client.post("/api/dms", json={"username": "bob"}, headers=u["alice"]["headers"])).json()["channel"]
        for text in ("one", "two", "three"):
            last = await say(client, u["alice"], dm, {"text": text})
        listed = (await client.get("/api/dms", headers=u["bob"]["headers"])).json()["dms"]
        sent_at = listed[0]["last_message"].pop("ts")
        assert listed == [{"channel": dm, "user": {"id": u["alice"]["id"], "username": "alice"},
                           "last_offset": last, "unread": 3,
                           "last_message": {"text": "three", "from": {"id": u["alice"]["id"], "username": "alice"}}}]
        assert sent_at.startswith(str(datetime.now(UTC).year))
        marked = await client.post(f"/api/channels/{dm}/read", json={"offset": 2}, headers=u["bob"]["headers"])
        assert marked.status_code == 200 and marked.json()["channel_unread"] == 1
        assert (await client.get("/api/dms", headers=u["bob"]["headers"])).json()["dms"][0]["unread"] == 1
        back = await client.post(f"/api/channels/{dm}/read", json={"offset": 1}, headers=u["bob"]["headers"])
        assert back.status_code == 200 and back.json()["offset"] == 2  # never moves back
        assert (await client.get("/api/dms", headers=u["bob"]["headers"])).json()["dms"][0]["unread"] == 1
        outsider = await register(client, "carol")
        carol = bearer((await login(client, outsider["username"]))["access_token"])
        assert (await client.post(f"/api/channels/{dm}/read", json={"offset": 1}, headers=carol)).status_code == 404
