"""The forum (docs/community.md, "Forum") on both backends: threads, replies, votes, pins, locks,
edits and tombstones; who may see and do what (no probing: 404); XP per source; notifications;
live events across two replicas and their recovery after a reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.live import listen, personal, replicas, token_of
from tests.support.wsclient import WsClient

LIVE_WITHIN = 1.0  # seconds: a change reaches a subscriber on the other replica within this


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend) as both:
        yield both


async def set_role(server: AppServer, username: str, role: str) -> None:
    from server.db.queries import users

    db = server.resources.db
    user = await users.by_username(db, username)
    await users.update(db, user["id"], role=role)
    await server.resources.auth.user_changed(user["id"])  # cached principals learn the new role


async def general(client: httpx.AsyncClient, who: dict[str, Any]) -> dict[str, Any]:
    categories = (await client.get("/api/forum/categories", headers=who["headers"])).json()["categories"]
    return next(c for c in categories if c["name"] == "General")


async def new_thread(client: httpx.AsyncClient, who: dict[str, Any], category_id: int, title: str,
                     body: str = "Hello there") -> dict[str, Any]:
    response = await client.post(f"/api/forum/categories/{category_id}/threads", json={"title": title, "body": body},
                                 headers=who["headers"])
    assert response.status_code == 201, response.text
    return dict(response.json())


async def xp_settles(client: httpx.AsyncClient, who: dict[str, Any], name: str, expected: int) -> None:
    """XP is awarded in the background: wait for the total, then make sure nothing more lands."""
    deadline = asyncio.get_running_loop().time() + 5
    while (xp := (await client.get(f"/api/users/{name}", headers=who["headers"])).json()["xp"]) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{name} has {xp} XP, expected {expected}"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert (await client.get(f"/api/users/{name}", headers=who["headers"])).json()["xp"] == expected


class Inbox:
    """Pushes of one connection, taken by channel and type in any order (others are kept)."""

    def __init__(self, ws: WsClient) -> None:
        self.ws = ws
        self.kept: list[dict[str, Any]] = []

    async def take(self, channel: str, kind: str, where: Callable[[dict[str, Any]], bool] = lambda data: True,
                   timeout: float = LIVE_WITHIN) -> dict[str, Any]:
        """The first push of `kind` on `channel` (`user:` for the personal one) whose data passes
        `where`, within `timeout` seconds."""
        def wanted(push: dict[str, Any]) -> bool:
            return bool(push["channel"].startswith(channel) and push["data"].get("type") == kind
                        and where(push["data"]))

        for push in self.kept:
            if wanted(push):
                self.kept.remove(push)
                return push
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            push = await self.ws.push("message", timeout=max(0.01, deadline - asyncio.get_running_loop().time()))
            if wanted(push):
                return push
            self.kept.append(push)


async def test_threads_replies_and_votes_go_live_to_the_other_replica_and_award_xp_once(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob = u["alice"], u["bob"]
        category = await general(client, alice)
        assert category["can_post"] is True and category["view"] == "everyone"
        board = f"live:forum:{category['id']}"
        alice_ws = await listen(two, alice)  # alice reads on the other replica
        try:
            assert (await alice_ws.request("subscribe", channel=board))["ok"]
            inbox = Inbox(alice_ws)
            thread = await new_thread(client, alice, category["id"], "  Redstone   clocks ",
                                      "How do **you** build one?")
            assert thread["title"] == "Redstone clocks" and thread["body"] == "How do **you** build one?"
            assert thread["html"] == "<p>How do <strong>you</strong> build one?</p>\n"
            assert (thread["author"]["username"], thread["watching"], thread["my_vote"]) == ("alice", True, 0)
            created = await inbox.take(board, "thread_created")
            assert created["data"]["thread"]["id"] == thread["id"]
            assert "body" not in created["data"]["thread"] and "my_vote" not in created["data"]["thread"]

            channel = f"live:thread:{thread['id']}"
            subscribed = await alice_ws.request("subscribe", channel=channel)
            assert subscribed["ok"]
            reply = (await client.post(f"/api/forum/threads/{thread['id']}/replies", json={"body": "A *piston* loop."},
                                       headers=bob["headers"]))
            assert reply.status_code == 201, reply.text
            reply_id = reply.json()["id"]
            pushed = await inbox.take(channel, "reply_created")
            assert pushed["data"]["reply"]["html"] == "<p>A <em>piston</em> loop.</p>\n"
            assert pushed["data"]["reply"]["author"]["username"] == "bob"
            listed = await inbox.take(board, "thread_updated")
            assert listed["data"]["thread"]["replies"] == 1
            note = (await inbox.take("user:", "notification", timeout=5))["data"]  # alice watches her thread
            assert note["notification"]["kind"] == "forum_reply"
            assert note["notification"]["url"] == f"/forum/t/{thread['id']}#r{reply_id}"
            assert note["notification"]["actor"]["username"] == "bob"

            # a vote toggled ten times: the score follows, the author earns +3 once
            for n in range(10):
                answer = (await client.post(f"/api/forum/threads/{thread['id']}/vote", json={"value": 1 - n % 2},
                                            headers=bob["headers"])).json()
                assert answer == {"score": 1 - n % 2, "my_vote": 1 - n % 2}
            await xp_settles(client, alice, "alice", 20 + 3)
            await xp_settles(client, alice, "bob", 10)
            assert (await client.post(f"/api/forum/threads/{thread['id']}/vote", json={"value": -1},
                                      headers=bob["headers"])).json() == {"score": -1, "my_vote": -1}
            await inbox.take(channel, "thread_updated", lambda data: data["thread"]["score"] == -1)
            await inbox.take(board, "thread_updated", lambda data: data["thread"]["score"] == -1)
            await xp_settles(client, alice, "alice", 20 + 3 - 2)
            # voting on a reply goes out on the thread's stream
            assert (await client.post(f"/api/forum/replies/{reply_id}/vote", json={"value": 1},
                                      headers=alice["headers"])).json() == {"score": 1, "my_vote": 1}
            voted = await inbox.take(channel, "reply_updated")
            assert voted["data"]["reply"]["score"] == 1
            await xp_settles(client, alice, "bob", 10 + 3)

            # recovery: away while two replies are posted, back with `since`: both in `missed`
            position = {"offset": voted["offset"], "epoch": subscribed["epoch"]}
            await alice_ws.close()
            for text in ("second", "third"):
                assert (await client.post(f"/api/forum/threads/{thread['id']}/replies", json={"body": text},
                                          headers=u["carol"]["headers"])).status_code == 201
            alice_ws = await WsClient.connect(two.base_url, token_of(alice))
            back = await alice_ws.request("subscribe", channel=channel, since=position)
            assert back["ok"] and back["recovered"] is True
            missed = [m["data"]["reply"]["html"] for m in back["missed"] if m["data"]["type"] == "reply_created"]
            assert missed == ["<p>second</p>\n", "<p>third</p>\n"]
        finally:
            await alice_ws.close()

        page = (await client.get(f"/api/forum/threads/{thread['id']}", headers=bob["headers"])).json()
        assert page["thread"]["replies"] == 3 and page["thread"]["score"] == -1 and page["thread"]["my_vote"] == -1
        assert page["thread"]["body"] is None  # the Markdown source is the author's
        assert [r["html"] for r in page["replies"]["items"]] == [
            "<p>A <em>piston</em> loop.</p>\n", "<p>second</p>\n", "<p>third</p>\n"]
        assert page["replies"]["items"][0]["body"] == "A *piston* loop." and page["replies"]["next"] is None
        category = await general(client, alice)
        assert (category["threads"], category["replies"]) == (1, 3)


async def test_moderation_edits_tombstones_and_paging(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        await set_role(app_server, "carol", "moderator")
        category_id = (await general(client, alice))["id"]
        first = await new_thread(client, alice, category_id, "First")
        second = await new_thread(client, bob, category_id, "Second")
        third = await new_thread(client, alice, category_id, "Third")

        # pin (moderators only): pinned first in every sort; opaque cursors page the rest
        assert (await client.post(f"/api/forum/threads/{first['id']}/pin", headers=bob["headers"])).status_code == 403
        pinned = await client.post(f"/api/forum/threads/{first['id']}/pin", headers=carol["headers"])
        assert pinned.status_code == 200 and pinned.json()["pinned"] is True
        await client.post(f"/api/forum/threads/{second['id']}/vote", json={"value": 1}, headers=alice["headers"])

        async def titles(sort: str) -> list[list[str]]:
            pages, cursor = [], None
            while True:
                params: dict[str, str | int] = {"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})}
                page = (await client.get(f"/api/forum/categories/{category_id}/threads", params=params,
                                         headers=bob["headers"])).json()
                pages.append([t["title"] for t in page["items"]])
                if not (cursor := page["next"]):
                    return pages
        assert await titles("latest") == [["First", "Third"], ["Second"]]
        assert await titles("new") == [["First", "Third"], ["Second"]]
        assert await titles("top") == [["First", "Second"], ["Third"]]
        await client.post(f"/api/forum/threads/{second['id']}/replies", json={"body": "bump"}, headers=bob["headers"])
        assert await titles("latest") == [["First", "Second"], ["Third"]]
        for bad in ({"cursor": "nonsense"}, {"sort": "hot"}, {"limit": 0}):
            response = await client.get(f"/api/forum/categories/{category_id}/threads", params=bad,
                                        headers=bob["headers"])
            assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] in bad

        # views: once per member per hour
        for who in (bob, bob, alice):
            await client.get(f"/api/forum/threads/{third['id']}", headers=who["headers"])
        assert (await client.get(f"/api/forum/threads/{third['id']}", headers=bob["headers"])).json()[
            "thread"]["views"] == 2

        # lock: no replies from members; moderators still may
        assert (await client.post(f"/api/forum/threads/{third['id']}/lock", headers=carol["headers"])).json()["locked"]
        refused = await client.post(f"/api/forum/threads/{third['id']}/replies", json={"body": "hi"},
                                    headers=bob["headers"])
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "thread_locked"
        assert (await client.post(f"/api/forum/threads/{third['id']}/replies", json={"body": "Locked: off-topic."},
                                  headers=carol["headers"])).status_code == 201

        # edits: the author (and moderators) only; the replaced version is kept
        assert (await client.patch(f"/api/forum/threads/{third['id']}", json={"title": "Mine now"},
                                   headers=bob["headers"])).status_code == 403
        edited = await client.patch(f"/api/forum/threads/{third['id']}", json={"title": "Third (edited)",
                                                                               "body": "New ~~text~~"},
                                    headers=alice["headers"])
        assert edited.status_code == 200, edited.text
        assert edited.json()["html"] == "<p>New <s>text</s></p>\n" and edited.json()["edited_at"] is not None
        history = (await client.get(f"/api/forum/threads/{third['id']}/edits", headers=alice["headers"])).json()
        assert [(e["title"], e["body"], e["editor"]["username"]) for e in history["edits"]] == [
            ("Third", "Hello there", "alice")]
        assert (await client.get(f"/api/forum/threads/{third['id']}/edits",
                                 headers=bob["headers"])).status_code == 403
        reply = (await client.post(f"/api/forum/threads/{second['id']}/replies", json={"body": "v1"},
                                   headers=bob["headers"])).json()
        assert (await client.patch(f"/api/forum/replies/{reply['id']}", json={"body": "hacked"},
                                   headers=alice["headers"])).status_code == 403
        assert (await client.patch(f"/api/forum/replies/{reply['id']}", json={"body": "v2"},
                                   headers=bob["headers"])).json()["html"] == "<p>v2</p>\n"
        assert [e["body"] for e in (await client.get(f"/api/forum/replies/{reply['id']}/edits",
                                                     headers=bob["headers"])).json()["edits"]] == ["v1"]

        # tombstones: a deleted thread keeps its replies; title and body only for moderators
        assert (await client.delete(f"/api/forum/threads/{second['id']}", headers=alice["headers"])).status_code == 403
        assert (await client.delete(f"/api/forum/threads/{second['id']}", headers=bob["headers"])).status_code == 204
        gone = (await client.get(f"/api/forum/threads/{second['id']}", headers=alice["headers"])).json()
        assert gone["thread"]["deleted"] is True and gone["thread"]["title"] is None and gone["thread"]["html"] is None
        assert [r["html"] for r in gone["replies"]["items"]] == ["<p>bump</p>\n", "<p>v2</p>\n"]
        seen = (await client.get(f"/api/forum/threads/{second['id']}", headers=carol["headers"])).json()
        assert seen["thread"]["title"] == "Second"
        assert (await client.post(f"/api/forum/threads/{second['id']}/replies", json={"body": "late"},
                                  headers=alice["headers"])).json()["error"]["code"] == "thread_deleted"
        assert await titles("latest") == [["First", "Third (edited)"]]
        counts = await general(client, bob)
        assert (counts["threads"], counts["replies"]) == (2, 1)

        # a moderator removing someone else's reply: a tombstone, and -50 XP to its author
        await xp_settles(client, bob, "bob", 20 + 10 + 10 + 3)
        assert (await client.delete(f"/api/forum/replies/{reply['id']}", headers=carol["headers"])).status_code == 204
        await xp_settles(client, bob, "bob", 20 + 10 + 10 + 3 - 50)
        again = (await client.get(f"/api/forum/threads/{second['id']}", headers=alice["headers"])).json()
        assert again["replies"]["items"][1]["deleted"] is True and again["replies"]["items"][1]["html"] is None
        assert again["thread"]["replies"] == 1


async def test_private_categories_answer_404_and_input_is_checked(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "root", "carol", "bob", "robot")
        root, carol, bob, robot = u["root"], u["carol"], u["bob"], u["robot"]
        await set_role(app_server, "root", "admin")
        await set_role(app_server, "carol", "moderator")
        await set_role(app_server, "robot", "bot")
        assert (await client.post("/api/admin/forum/categories", json={"name": "Staff"},
                                  headers=bob["headers"])).status_code == 403
        staff = await client.post("/api/admin/forum/categories", headers=root["headers"], json={
            "name": "Staff room", "description": "Moderators only", "view": "moderator", "post": "moderator"})
        assert staff.status_code == 201, staff.text
        staff_id = staff.json()["id"]
        assert staff.json()["slug"] == "staff-room" and staff.json()["position"] == 1
        news = (await client.post("/api/admin/forum/categories", headers=root["headers"], json={
            "name": "News", "view": "members", "post": "admin", "position": 5})).json()
        assert (await client.post("/api/admin/forum/categories", json={"name": "news"},
                                  headers=root["headers"])).status_code == 409

        def names(who: dict[str, Any]) -> Any:
            return client.get("/api/forum/categories", headers=who["headers"])
        assert [c["name"] for c in (await names(bob)).json()["categories"]] == ["General", "News"]
        assert [c["name"] for c in (await names(carol)).json()["categories"]] == ["General", "Staff room", "News"]
        assert [c["name"] for c in (await names(robot)).json()["categories"]] == ["General"]  # bots are not members
        assert [c["can_post"] for c in (await names(bob)).json()["categories"]] == [True, False]
        refused = await client.post(f"/api/forum/categories/{news['id']}/threads", json={"title": "x", "body": "y"},
                                    headers=bob["headers"])
        assert refused.status_code == 403

        secret = await new_thread(client, carol, staff_id, "Ban wave", "@bob is next")
        tid = secret["id"]
        for method, path, body in [
            ("GET", f"/api/forum/categories/{staff_id}/threads", None),
            ("POST", f"/api/forum/categories/{staff_id}/threads", {"title": "x", "body": "y"}),
            ("GET", f"/api/forum/threads/{tid}", None),
            ("PATCH", f"/api/forum/threads/{tid}", {"title": "x"}),
            ("DELETE", f"/api/forum/threads/{tid}", None),
            ("GET", f"/api/forum/threads/{tid}/edits", None),
            ("POST", f"/api/forum/threads/{tid}/vote", {"value": 1}),
            ("POST", f"/api/forum/threads/{tid}/watch", None),
            ("POST", f"/api/forum/threads/{tid}/replies", {"body": "hi"}),
            ("GET", f"/api/forum/threads/{tid + 1000}", None),
        ]:
            response = await client.request(method, path, json=body, headers=bob["headers"])
            assert response.status_code == 404, (method, path, response.text)
        reply = (await client.post(f"/api/forum/threads/{tid}/replies", json={"body": "ok"},
                                   headers=root["headers"])).json()
        for method, path, body in [("PATCH", f"/api/forum/replies/{reply['id']}", {"body": "x"}),
                                   ("DELETE", f"/api/forum/replies/{reply['id']}", None),
                                   ("POST", f"/api/forum/replies/{reply['id']}/vote", {"value": 1}),
                                   ("GET", f"/api/forum/replies/{reply['id']}/edits", None)]:
            assert (await client.request(method, path, json=body, headers=bob["headers"])).status_code == 404
        assert (await client.post(f"/api/forum/threads/{tid}/pin", headers=carol["headers"])).status_code == 200

        ws = await listen(app_server, bob)
        try:
            for channel in (f"live:forum:{staff_id}", f"live:thread:{tid}", "live:forum:999999", "live:thread:abc"):
                answer = await ws.request("subscribe", channel=channel)
                assert answer["ok"] is False and answer["error"]["code"] == "forbidden", channel
            # a mention where bob may read notifies him; the staff thread's did not
            general_id = (await names(bob)).json()["categories"][0]["id"]
            await new_thread(client, carol, general_id, "Welcome", "Say hi, @BOB!")
            note = await personal(ws, "notification")
            assert note["notification"]["kind"] == "forum_mention"
            assert note["notification"]["url"].startswith("/forum/t/")
            listed = (await client.get("/api/notifications", headers=bob["headers"])).json()["notifications"]
            assert [n["kind"] for n in listed] == ["forum_mention"]
        finally:
            await ws.close()

        # bad input: field errors
        cases: list[tuple[str, dict[str, Any], str]] = [
            (f"/api/forum/categories/{general_id}/threads", {"title": "x" * 201, "body": "y"}, "title"),
            (f"/api/forum/categories/{general_id}/threads", {"title": "ok", "body": "  \n "}, "body"),
            (f"/api/forum/categories/{general_id}/threads", {"title": "ok", "body": "a\u0007b"}, "body"),
            (f"/api/forum/categories/{general_id}/threads", {"title": "ok", "body": "y", "pinned": True}, "pinned"),
            (f"/api/forum/threads/{tid}/vote", {"value": 2}, "value"),
            (f"/api/forum/threads/{tid}/vote", {"value": False}, "value"),
            (f"/api/forum/threads/{tid}/replies", {"body": "x" * 5001}, "body"),
        ]
        for path, body, field in cases:
            response = await client.post(path, json=body, headers=carol["headers"])
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["code"] == "validation_failed"
            assert field in [d["field"] for d in response.json()["error"]["details"]], response.text

        # markdown is made safe: no scripts, no javascript: links, raw HTML shown as text
        unsafe = await new_thread(client, carol, general_id, "Tricks", "<script>alert(1)</script>\n\n"
                                  "[click](javascript:alert(1)) <img src=x onerror=alert(1)> [ok](https://vonix.net)"
                                  " @bob @nobody_here")
        html = unsafe["html"]
        assert "<script" not in html and "<img" not in html and 'href="javascript' not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert '<a href="https://vonix.net" rel="nofollow noopener">ok</a>' in html
        assert '<a href="/u/bob" class="mention" rel="nofollow noopener">@bob</a>' in html
        assert "@nobody_here" in html and "/u/nobody_here" not in html

        # categories: edit, and delete only when empty
        patched = await client.patch(f"/api/admin/forum/categories/{news['id']}", headers=root["headers"],
                                     json={"name": "Announcements", "description": None, "post": "moderator"})
        assert patched.status_code == 200
        assert (patched.json()["slug"], patched.json()["post"], patched.json()["can_post"]) == (
            "announcements", "moderator", True)
        assert (await client.delete(f"/api/admin/forum/categories/{staff_id}",
                                    headers=root["headers"])).status_code == 409
        assert (await client.delete(f"/api/admin/forum/categories/{news['id']}",
                                    headers=root["headers"])).status_code == 204
        assert (await client.patch(f"/api/admin/forum/categories/{news['id']}", json={"name": "x"},
                                   headers=root["headers"])).status_code == 404
