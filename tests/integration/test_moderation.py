"""Moderation (issue 16): mutes, bans, kicks, slow mode, room roles and the report queue; effects
live and cluster-wide (two replicas in scaled mode), every action in the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from server.db.tables import audit_log, sanctions
from server.db.types import utcnow
from tests.support.accounts import PASSWORD, login
from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.contract import assert_conforms
from tests.support.live import personal, replicas, token_of
from tests.support.wsclient import WsClient

ROOM = "room:general"


async def promote(server: AppServer, user_id: int, role: str) -> None:
    from server.db.queries import users

    await users.update(server.resources.db, user_id, role=role)
    await server.resources.auth.user_changed(user_id)


async def next_of(ws: WsClient, op: str, timeout: float = 1.0) -> dict[str, Any]:
    """Within `timeout` (the issue's bound for cluster-wide effects)."""
    return await ws.push(op, timeout=timeout)


async def audited(server: AppServer, action: str) -> list[Any]:
    return list(await server.resources.db.fetch_all("test.audit", sa.select(audit_log).where(
        audit_log.c.action == action)))


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend) as both:
        yield both


async def test_a_mute_refuses_writing_with_its_end_and_lifting_it_restores(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "mod", "bob")
        mod, bob = u["mod"], u["bob"]
        await promote(one, mod["id"], "moderator")
        await client.post("/api/rooms/general/join", headers=bob["headers"])
        said = await say(client, bob, ROOM, {"text": "before"})
        ws = await WsClient.connect(two.base_url, token_of(bob))
        try:
            await ws.request("subscribe", channel=f"user:{bob['id']}")
            response = await client.post("/api/moderation/sanctions", headers=mod["headers"], json={
                "kind": "mute", "username": "bob", "channel": ROOM, "minutes": 5, "reason": "spam"})
            assert response.status_code == 201, response.text
            sanction = await assert_conforms(client, response, "POST", "/api/moderation/sanctions")
            assert sanction["kind"] == "mute" and sanction["channel"] == ROOM and sanction["until"]
            event = await personal(ws, "sanction")
            assert event["reason"] == "spam" and event["until"] == sanction["until"]

            reply = await ws.request("publish", channel=ROOM, data={"text": "muted?"})
            error = reply["error"]
            assert error["code"] == "forbidden" and error["temporary"] is True
            assert "muted" in error["message"] and sanction["until"][:16] in error["message"]
            assert 290 < error["retry_after"] <= 300
            assert (await ws.request("react", channel=ROOM, offset=said, emoji="👍"))["error"]["code"] == "forbidden"
            rest = await client.post(f"/api/channels/{ROOM}/messages", json={"data": {"text": "x"}},
                                     headers=bob["headers"])
            assert rest.status_code == 403
            # only that room: a DM still works
            dm = (await client.post("/api/dms", json={"username": "mod"}, headers=bob["headers"])).json()["channel"]
            assert (await ws.request("publish", channel=dm, data={"text": "why?"}))["ok"]

            response = await client.get("/api/moderation/sanctions", params={"username": "bob"},
                                        headers=mod["headers"])
            listed = (await assert_conforms(client, response, "GET", "/api/moderation/sanctions"))["sanctions"]
            assert [s["id"] for s in listed] == [sanction["id"]]
            assert listed[0]["username"] == "bob" and listed[0]["channel"] == ROOM and listed[0]["until"]
            assert (await client.delete(f"/api/moderation/sanctions/{sanction['id']}",
                                        headers=mod["headers"])).status_code == 204
            assert (await personal(ws, "sanction_lifted"))["id"] == sanction["id"]
            assert (await ws.request("publish", channel=ROOM, data={"text": "free again"}))["ok"]
            assert (await client.delete(f"/api/moderation/sanctions/{sanction['id']}",
                                        headers=mod["headers"])).status_code == 404
        finally:
            await ws.close()
        assert [r["actor_id"] for r in await audited(one, "moderation.mute")] == [mod["id"]]
        assert len(await audited(one, "moderation.mute_lifted")) == 1


async def test_a_room_ban_removes_the_member_within_a_second_on_every_replica(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "carol", "bob")
        carol, bob = u["carol"], u["bob"]
        await client.post("/api/rooms", json={"name": "den"}, headers=carol["headers"])
        await client.post("/api/rooms/den/join", headers=bob["headers"])
        here, there = [await WsClient.connect(s.base_url, token_of(bob)) for s in (one, two)]
        try:
            for ws in (here, there):
                assert (await ws.request("subscribe", channel="room:den"))["ok"]
                assert (await ws.request("subscribe", channel=ROOM))["ok"]
            response = await client.post("/api/moderation/sanctions", headers=carol["headers"], json={
                "kind": "ban", "username": "bob", "channel": "room:den", "reason": "rude", "minutes": 60})
            assert response.status_code == 201, response.text
            for ws in (here, there):
                assert await next_of(ws, "removed") == {"op": "removed", "channel": "room:den", "reason": "banned"}
            await say(client, carol, "room:den", {"text": "bob is gone"})
            with pytest.raises(asyncio.TimeoutError):  # nothing more from the room reaches him
                while (await there.push("message", timeout=0.5))["channel"] != "room:den":
                    pass
            reply = await there.request("subscribe", channel="room:den")
            assert reply["error"]["code"] == "forbidden" and "banned" in reply["error"]["message"]
            assert (await there.request("subscribe", channel=ROOM))["error"]["code"] == "already_subscribed"
            assert (await client.post("/api/rooms/den/join", headers=bob["headers"])).status_code == 403
            history = await client.get("/api/channels/room:den/messages", headers=bob["headers"])
            assert history.status_code == 403
            members = (await client.get("/api/rooms/den/members", headers=carol["headers"])).json()["members"]
            assert [m["username"] for m in members] == ["carol"]

            # when the ban is over (moved into the past here) he may come back
            await one.resources.db.execute("test.expire", sanctions.update().values(
                until=utcnow() - timedelta(seconds=1)))
            await one.resources.sanctions.cache.invalidate(tags=[f"sanctions:{bob['id']}"])
            assert (await client.post("/api/rooms/den/join", headers=bob["headers"])).status_code == 200
            assert (await there.request("subscribe", channel="room:den"))["ok"]
        finally:
            await here.close()
            await there.close()


async def test_a_site_ban_closes_every_connection_with_4007_and_signs_out(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "admin", "bob")
        admin, bob = u["admin"], u["bob"]
        await promote(one, admin["id"], "admin")
        fresh = await login(client, "bob")
        here, there = [await WsClient.connect(s.base_url, token_of(bob)) for s in (one, two)]
        response = await client.post("/api/moderation/sanctions", headers=admin["headers"], json={
            "kind": "ban", "username": "bob", "reason": "cheating", "minutes": 10})
        assert response.status_code == 201, response.text
        assert (await assert_conforms(client, response, "POST", "/api/moderation/sanctions"))["channel"] is None
        for ws in (here, there):
            assert await ws.close_code(timeout=1.0) == 4007
        listed = await client.get("/api/moderation/sanctions", headers=admin["headers"])
        sanctions_now = (await assert_conforms(client, listed, "GET", "/api/moderation/sanctions"))["sanctions"]
        assert [(s["username"], s["kind"], s["channel_id"]) for s in sanctions_now] == [("bob", "ban", None)]
        assert (await client.get("/api/rooms", headers=bob["headers"])).status_code == 401
        relogin = await client.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
        assert relogin.status_code == 401
        refreshed = await client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert refreshed.status_code == 401
        # a timed ban runs out: signing in works again
        await one.resources.db.execute("test.expire", sanctions.update().values(until=utcnow() - timedelta(seconds=1)))
        again = await client.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
        assert again.status_code == 200, again.text
        assert len(await audited(one, "moderation.ban")) == 1


async def test_kick_slow_mode_and_room_roles(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "carol", "dave", "bob")
        carol, dave, bob = u["carol"], u["dave"], u["bob"]
        await client.post("/api/rooms", json={"name": "den"}, headers=carol["headers"])
        for who in (dave, bob):
            await client.post("/api/rooms/den/join", headers=who["headers"])
        # dave cannot kick until the owner makes him a moderator
        kick = {"username": "bob", "reason": "off topic"}
        assert (await client.post("/api/rooms/den/kick", json=kick, headers=dave["headers"])).status_code == 403
        response = await client.put("/api/rooms/den/members/dave/role", json={"role": "moderator"},
                                    headers=bob["headers"])
        assert response.status_code == 403
        response = await client.put("/api/rooms/den/members/dave/role", json={"role": "moderator"},
                                    headers=carol["headers"])
        assert response.json()["role"] == "moderator"
        await assert_conforms(client, response, "PUT", "/api/rooms/{name}/members/{username}/role")
        ws = await WsClient.connect(two.base_url, token_of(bob))
        try:
            assert (await ws.request("subscribe", channel="room:den"))["ok"]
            assert (await client.post("/api/rooms/den/kick", json=kick, headers=dave["headers"])).status_code == 204
            assert await next_of(ws, "removed") == {"op": "removed", "channel": "room:den", "reason": "kicked"}
            # a moderator cannot kick the owner; a kicked member may come back
            owner_kick = {"username": "carol", "reason": "coup"}
            refused = await client.post("/api/rooms/den/kick", json=owner_kick, headers=dave["headers"])
            assert refused.status_code == 403
            assert (await client.post("/api/rooms/den/join", headers=bob["headers"])).status_code == 200

            # slow mode: one message per 30 s for members, the room's staff exempt; edits are not messages
            response = await client.put("/api/rooms/den/slow-mode", json={"seconds": 30}, headers=bob["headers"])
            assert response.status_code == 403
            response = await client.put("/api/rooms/den/slow-mode", json={"seconds": 30}, headers=dave["headers"])
            assert response.json() == {"channel": "room:den", "slow_mode": 30}
            await assert_conforms(client, response, "PUT", "/api/rooms/{name}/slow-mode")
            assert (await client.get("/api/rooms/den", headers=bob["headers"])).json()["slow_mode"] == 30
            first = await ws.request("publish", channel="room:den", data={"text": "one"})
            assert first["ok"]
            second = await ws.request("publish", channel="room:den", data={"text": "two"})
            assert second["error"]["code"] == "rate_limited" and 25 < second["error"]["retry_after"] <= 30
            assert "slow mode" in second["error"]["message"]
            assert (await ws.request("edit", channel="room:den", offset=first["offset"], data={"text": "1"}))["ok"]
            for staff in (carol, dave):
                for n in range(2):
                    await say(client, staff, "room:den", {"text": f"staff {n}"})
            await client.put("/api/rooms/den/slow-mode", json={"seconds": 0}, headers=carol["headers"])
            assert (await ws.request("publish", channel="room:den", data={"text": "two"}))["ok"]
        finally:
            await ws.close()
        assert len(await audited(one, "moderation.kick")) == 1
        assert len(await audited(one, "moderation.slow_mode")) == 2


async def test_who_may_sanction_whom_and_bad_requests(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "admin", "mod", "carol", "bob")
        await promote(app_server, u["admin"]["id"], "admin")
        await promote(app_server, u["mod"]["id"], "moderator")
        await client.post("/api/rooms", json={"name": "den"}, headers=u["carol"]["headers"])
        await client.post("/api/rooms", json={"name": "vault", "private": True}, headers=u["admin"]["headers"])

        def ban(who: str, target: str, **extra: Any) -> Any:
            body = {"kind": "ban", "username": target, "reason": "test", **extra}
            return client.post("/api/moderation/sanctions", json=body, headers=u[who]["headers"])

        assert (await ban("bob", "carol")).status_code == 403  # a member moderates nothing
        assert (await ban("bob", "carol", channel="room:den")).status_code == 403
        assert (await ban("carol", "bob")).status_code == 403  # a room owner cannot ban site-wide
        assert (await ban("carol", "mod", channel="room:den")).status_code == 403  # nor site staff in her room
        assert (await ban("mod", "admin")).status_code == 403  # a moderator cannot ban an admin
        assert (await ban("mod", "mod")).status_code == 403  # nobody themselves
        response = await ban("bob", "carol", channel="room:vault")  # a private room bob cannot see
        assert response.status_code == 404 and response.json()["error"]["code"] == "room_not_found"
        assert (await ban("mod", "nobody")).status_code == 404
        for body, field in (({"kind": "mute", "username": "bob", "reason": "x"}, "body"),
                            ({"kind": "ban", "username": "bob", "reason": "  "}, "reason"),
                            ({"kind": "ban", "username": "bob", "reason": "x", "minutes": 0}, "minutes"),
                            ({"kind": "jail", "username": "bob", "reason": "x"}, "kind"),
                            ({"kind": "ban", "username": "bob", "reason": "x", "channel": "dm:1:2"}, "channel")):
            response = await client.post("/api/moderation/sanctions", json=body, headers=u["mod"]["headers"])
            assert response.status_code == 422, (body, response.text)
            assert response.json()["error"]["details"][0]["field"] == field
        assert (await client.get("/api/moderation/sanctions", headers=u["carol"]["headers"])).status_code == 403
        # lifting someone else's sanction: only who may impose it
        muted = await client.post("/api/moderation/sanctions", headers=u["mod"]["headers"], json={
            "kind": "mute", "username": "bob", "minutes": 5, "reason": "x"})
        lift = f"/api/moderation/sanctions/{muted.json()['id']}"
        assert (await client.delete(lift, headers=u["bob"]["headers"])).status_code == 403
        assert (await client.delete(lift, headers=u["carol"]["headers"])).status_code == 403
        assert (await client.delete("/api/moderation/sanctions/999999", headers=u["mod"]["headers"])).status_code == 404
        # a report is resolved by site staff only
        report = await client.post("/api/reports", json={"username": "bob", "reason": "x"},
                                   headers=u["carol"]["headers"])
        resolve = f"/api/admin/reports/{report.json()['id']}/resolve"
        for who, status in (("carol", 403), ("mod", 200)):
            response = await client.post(resolve, json={"action": "dismiss"}, headers=u[who]["headers"])
            assert response.status_code == status, who
        await assert_conforms(client, response, "POST", "/api/admin/reports/{report_id}/resolve")
        # a reported feed post: the queue says which post, with its text
        post = (await client.post("/api/posts", json={"content": "buy gold"}, headers=u["bob"]["headers"])).json()
        filed = await client.post("/api/reports", json={"target": "post", "id": post["id"], "reason": "spam"},
                                  headers=u["carol"]["headers"])
        assert filed.status_code == 201, filed.text
        await assert_conforms(client, filed, "POST", "/api/reports")
        response = await client.get("/api/admin/reports", headers=u["mod"]["headers"])
        queue = (await assert_conforms(client, response, "GET", "/api/admin/reports"))["reports"]
        assert [(r["target"], r["text"], r["user"], r["channel"]) for r in queue] == [
            ({"kind": "post", "id": post["id"]}, "buy gold", "bob", None)]
        assert (await client.post("/api/rooms/den/slow-mode", json={"seconds": 5})).status_code in (401, 405)
        response = await client.put("/api/rooms/den/slow-mode", json={"seconds": 99999},
                                    headers=u["carol"]["headers"])
        assert response.status_code == 422


async def test_reports_reach_the_queue_live_and_actions_resolve_them(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "mod", "alice", "bob")
        mod, alice, bob = u["mod"], u["alice"], u["bob"]
        await promote(one, mod["id"], "moderator")
        for who in (alice, bob):
            await client.post("/api/rooms/general/join", headers=who["headers"])
        rude = await say(client, bob, ROOM, {"text": "something rude"})
        staff = await WsClient.connect(two.base_url, token_of(mod))
        try:
            await staff.request("subscribe", channel=f"user:{mod['id']}")
            await staff.request("subscribe", channel=ROOM)
            response = await client.post("/api/reports", json={"channel": ROOM, "offset": rude, "reason": "rude"},
                                         headers=alice["headers"])
            assert response.status_code == 201, response.text
            first = (await assert_conforms(client, response, "POST", "/api/reports"))["id"]
            live = await personal(staff, "report")
            assert live["report"]["id"] == first and live["report"]["text"] == "something rude"
            response = await client.post("/api/reports", json={"username": "bob", "reason": "spams everyone"},
                                         headers=alice["headers"])
            second = response.json()["id"]

            for body in ({"reason": "no target"}, {"channel": ROOM, "reason": "no offset"},
                         {"username": "bob", "channel": ROOM, "offset": rude, "reason": "both"},
                         {"username": "bob", "reason": ""}, {"username": "bob", "reason": "x" * 501}):
                assert (await client.post("/api/reports", json=body, headers=alice["headers"])).status_code == 422
            response = await client.post("/api/reports", json={"username": "alice", "reason": "me"},
                                         headers=alice["headers"])
            assert response.status_code == 400 and response.json()["error"]["code"] == "report_self"
            response = await client.post("/api/reports", json={"channel": ROOM, "offset": 99999, "reason": "x"},
                                         headers=alice["headers"])
            assert response.status_code == 404

            assert (await client.get("/api/admin/reports", headers=alice["headers"])).status_code == 403
            assert (await client.get("/api/admin/reports")).status_code == 401
            response = await client.get("/api/admin/reports", headers=mod["headers"])
            queue = (await assert_conforms(client, response, "GET", "/api/admin/reports"))["reports"]
            assert [(r["id"], r["user"], r["reporter"]) for r in queue] == [(second, "bob", "alice"),
                                                                            (first, "bob", "alice")]
            assert [(r["channel"], r["offset"], r["text"]) for r in queue] == [(None, None, None),
                                                                               (ROOM, rude, "something rude")]

            response = await client.post(f"/api/admin/reports/{first}/resolve", json={"action": "delete"},
                                         headers=mod["headers"])
            assert response.status_code == 200 and response.json()["resolution"] == "delete"
            resolved_one = await assert_conforms(client, response, "POST", "/api/admin/reports/{report_id}/resolve")
            assert resolved_one["id"] == first and resolved_one["status"] == "resolved"
            deleted = await staff.push("message")
            while deleted["channel"] != ROOM:
                deleted = await staff.push("message")
            assert deleted["data"] == {"type": "delete", "target": rude}
            assert (await personal(staff, "report_resolved"))["id"] == first
            response = await client.post(f"/api/admin/reports/{first}/resolve", json={"action": "dismiss"},
                                         headers=mod["headers"])
            assert response.status_code == 400
            response = await client.post(f"/api/admin/reports/{second}/resolve",
                                         json={"action": "mute", "minutes": 10}, headers=mod["headers"])
            assert response.status_code == 200
            reply = await client.post(f"/api/channels/{ROOM}/messages", json={"data": {"text": "hi"}},
                                      headers=bob["headers"])
            assert reply.status_code == 403
            assert (await client.get("/api/admin/reports", headers=mod["headers"])).json()["reports"] == []
            response = await client.get("/api/admin/reports", params={"status": "resolved"}, headers=mod["headers"])
            resolved = (await assert_conforms(client, response, "GET", "/api/admin/reports"))["reports"]
            assert {r["resolution"] for r in resolved} == {"delete", "mute"}
        finally:
            await staff.close()
        actions = [r["data"]["resolution"] for r in await audited(one, "report.resolved")]
        assert sorted(actions) == ["delete", "mute"]
        assert len(await audited(one, "report.created")) == 2
