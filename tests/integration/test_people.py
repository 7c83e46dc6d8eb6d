"""Profiles, friends and blocks (issue 16) on both backends; live events across two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.services.friend_presence import OFFLINE_GRACE_SECONDS
from tests.conftest import make_settings
from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.live import listen, personal, replicas, token_of
from tests.support.wsclient import WsClient


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend, RATE_LIMIT_ACTIONS="friend_request=3/3600") as both:
        yield both


async def test_profile_shows_a_member_and_edits_only_your_own(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client, two.client() as other_client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        ws = await listen(two, alice)  # another tab of alice's, on the other replica
        try:
            response = await client.patch("/api/users/me", headers=alice["headers"], json={
                "display_name": "  Alice   of Vonix ", "bio": "Builder.\nRedstone.", "dm_policy": "friends"})
            assert response.status_code == 200, response.text
            mine = response.json()
            assert (mine["display_name"], mine["bio"], mine["dm_policy"]) == (
                "Alice of Vonix", "Builder.\nRedstone.", "friends")
            assert mine["relationship"] == "self" and mine["can_dm"] is False
            event = await personal(ws, "profile")
            assert event["display_name"] == "Alice of Vonix" and event["dm_policy"] == "friends"
        finally:
            await ws.close()

        seen = (await other_client.get("/api/users/ALICE", headers=bob["headers"])).json()
        assert seen["username"] == "alice" and seen["display_name"] == "Alice of Vonix"
        assert seen["bio"] == "Builder.\nRedstone." and seen["relationship"] == "none"
        assert "dm_policy" not in seen  # someone else's setting shows only as can_dm
        assert seen["can_dm"] is False  # friends only, and bob is not a friend
        assert seen["avatar"] is None and seen["minecraft"] is None
        assert seen["level"] == 1 and seen["xp"] == 0 and seen["badges"] == []
        assert seen["joined_at"].startswith("20")
        assert seen["online"] is None and seen["last_seen_at"] is None  # no friendship, no shared room
        assert (await client.get("/api/users/me", headers=alice["headers"])).json()["username"] == "alice"

        # clearing with null / blank; a field not sent stays
        cleared = (await client.patch("/api/users/me", headers=alice["headers"],
                                      json={"display_name": "   "})).json()
        assert cleared["display_name"] is None and cleared["bio"] == "Builder.\nRedstone."
        # bob's edit never touches alice
        await client.patch("/api/users/me", headers=bob["headers"], json={"bio": "bob's"})
        assert (await client.get("/api/users/alice", headers=bob["headers"])).json()["bio"] == "Builder.\nRedstone."


@pytest.mark.parametrize(("body", "field", "code"), [
    ({"bio": "x" * 501}, "bio", "string_too_long"),
    ({"display_name": "y" * 65}, "display_name", "string_too_long"),
    ({"display_name": "bad\u0007name"}, "display_name", "value_error"),
    ({"bio": "escape\x1b[2Jinside"}, "bio", "value_error"),
    ({"dm_policy": "nobody"}, "dm_policy", "literal_error"),
    ({"role": "admin"}, "role", "extra_forbidden"),
    ({"bio": 5}, "bio", "string_type"),
])
async def test_profile_edits_with_bad_fields_are_refused_with_field_errors(
        app_server: AppServer, body: dict[str, Any], field: str, code: str) -> None:
    async with app_server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        response = await client.patch("/api/users/me", headers=alice["headers"], json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_failed"
        assert [(d["field"], d["code"]) for d in error["details"]] == [(field, code)]
        assert (await client.get("/api/users/me", headers=alice["headers"])).json()["role"] == "member"


async def test_unknown_members_and_signed_out_callers(app_server: AppServer) -> None:
    async with app_server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        for method, path in (("GET", "/api/users/nobody"), ("POST", "/api/friends/nobody/accept"),
                             ("POST", "/api/friends/nobody/decline"), ("DELETE", "/api/friends/nobody"),
                             ("PUT", "/api/blocks/nobody"), ("DELETE", "/api/blocks/nobody")):
            response = await client.request(method, path, headers=alice["headers"])
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "user_not_found"
        response = await client.post("/api/friends", headers=alice["headers"], json={"username": "nobody"})
        assert response.status_code == 404
        assert (await client.get("/api/users/..%2F..%2Fetc", headers=alice["headers"])).status_code == 404
        response = await client.post("/api/friends", headers=alice["headers"], json={"username": "a b"})
        assert response.status_code == 422
        for method, path in (("GET", "/api/users/alice"), ("PATCH", "/api/users/me"), ("GET", "/api/friends"),
                             ("PUT", "/api/blocks/alice")):
            assert (await client.request(method, path, json={})).status_code == 401


async def test_friend_request_accept_and_remove_arrive_live_on_both_sides(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        alice_ws, bob_ws = await listen(one, alice), await listen(two, bob)
        try:
            response = await client.post("/api/friends", headers=alice["headers"], json={"username": "bob"})
            assert response.json() == {"username": "bob", "relationship": "outgoing"}
            assert (await personal(bob_ws, "relationship")) == {
                "type": "relationship", "relationship": "incoming",
                "user": {"username": "alice", "display_name": "alice", "avatar": None, "role": "member"}}
            assert (await personal(alice_ws, "relationship"))["relationship"] == "outgoing"
            # asking again is idempotent; the lists show the request on both sides
            again = await client.post("/api/friends", headers=alice["headers"], json={"username": "bob"})
            assert again.json()["relationship"] == "outgoing"
            assert [p["username"] for p in (await client.get("/api/friends", headers=alice["headers"])
                                            ).json()["outgoing"]] == ["bob"]
            assert [p["username"] for p in (await client.get("/api/friends", headers=bob["headers"])
                                            ).json()["incoming"]] == ["alice"]

            response = await client.post("/api/friends/alice/accept", headers=bob["headers"])
            assert response.json() == {"username": "alice", "relationship": "friends"}
            for ws in (alice_ws, bob_ws):
                assert (await personal(ws, "relationship"))["relationship"] == "friends"
            lists = (await client.get("/api/friends", headers=alice["headers"])).json()
            assert [f["username"] for f in lists["friends"]] == ["bob"] and lists["outgoing"] == []
            assert lists["friends"][0]["online"] is True  # bob's websocket is open on replica two
            profile = (await client.get("/api/users/bob", headers=alice["headers"])).json()
            assert profile["relationship"] == "friends" and profile["online"] is True

            response = await client.post("/api/friends", headers=alice["headers"], json={"username": "bob"})
            assert response.status_code == 409 and response.json()["error"]["code"] == "already_friends"
            assert (await client.delete("/api/friends/alice", headers=bob["headers"])).status_code == 204
            for ws in (alice_ws, bob_ws):
                assert (await personal(ws, "relationship"))["relationship"] == "none"
            assert (await client.get("/api/friends", headers=alice["headers"])).json()["friends"] == []
        finally:
            await alice_ws.close()
            await bob_ws.close()


async def test_decline_cancel_and_crossed_requests(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        await client.post("/api/friends", headers=alice["headers"], json={"username": "bob"})
        response = await client.post("/api/friends/alice/accept", headers=alice["headers"])  # not to herself
        assert response.status_code == 404 and response.json()["error"]["code"] == "request_not_found"
        response = await client.post("/api/friends/bob/accept", headers=alice["headers"])  # her own request
        assert response.status_code == 404 and response.json()["error"]["code"] == "request_not_found"
        assert (await client.post("/api/friends/alice/decline", headers=bob["headers"])).status_code == 204
        assert (await client.get("/api/users/bob", headers=alice["headers"])).json()["relationship"] == "none"
        response = await client.post("/api/friends/alice/decline", headers=bob["headers"])
        assert response.status_code == 404

        await client.post("/api/friends", headers=alice["headers"], json={"username": "carol"})
        assert (await client.delete("/api/friends/carol", headers=alice["headers"])).status_code == 204  # cancel
        assert (await client.get("/api/friends", headers=carol["headers"])).json()["incoming"] == []
        response = await client.delete("/api/friends/carol", headers=alice["headers"])
        assert response.status_code == 404 and response.json()["error"]["code"] == "friend_not_found"

        # both ask: the second request accepts the first
        await client.post("/api/friends", headers=bob["headers"], json={"username": "carol"})
        response = await client.post("/api/friends", headers=carol["headers"], json={"username": "bob"})
        assert response.json()["relationship"] == "friends"
        response = await client.post("/api/friends", headers=alice["headers"], json={"username": "alice"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "friend_self"


async def test_new_friend_requests_are_rate_limited(pair: tuple[AppServer, AppServer]) -> None:
    one, _ = pair
    async with one.client() as client:
        u = await people(client, "alice", "b1x", "b2x", "b3x", "b4x")
        codes = []
        for name in ("b1x", "b2x", "b3x", "b4x"):
            response = await client.post("/api/friends", headers=u["alice"]["headers"], json={"username": name})
            codes.append(response.status_code)
        assert codes == [200, 200, 200, 429]
        assert "Retry-After" in response.headers
        # repeating a request already sent is not a new request: still answered
        again = await client.post("/api/friends", headers=u["alice"]["headers"], json={"username": "b1x"})
        assert again.status_code == 200


async def test_accepting_calls_the_xp_hook_for_both(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        metric = app_server.resources.metrics

        def awarded() -> float:
            return float(metric.registry.get_sample_value(
                "vonix_xp_events_total", {"action": "friend_accepted"}) or 0)

        before = awarded()
        await client.post("/api/friends", headers=u["alice"]["headers"], json={"username": "bob"})
        await client.post("/api/friends/alice/accept", headers=u["bob"]["headers"])
        assert awarded() == before + 2


async def test_a_block_refuses_requests_dms_and_mentions_and_looks_like_nothing(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        dm = (await client.post("/api/dms", headers=bob["headers"], json={"username": "alice"})).json()["channel"]
        await client.post("/api/friends", headers=bob["headers"], json={"username": "alice"})
        bob_ws = await listen(two, bob)
        try:
            response = await client.put("/api/blocks/bob", headers=alice["headers"])
            assert response.json() == {"username": "bob", "relationship": "blocked"}
            # bob sees the pending request vanish, not a block
            assert (await personal(bob_ws, "relationship"))["relationship"] == "none"
            assert (await client.get("/api/users/alice", headers=bob["headers"])).json()["relationship"] == "none"
            assert (await client.get("/api/users/bob", headers=alice["headers"])).json()["relationship"] == "blocked"
            assert [p["username"] for p in (await client.get("/api/friends", headers=alice["headers"])
                                            ).json()["blocked"]] == ["bob"]
            assert (await client.get("/api/friends", headers=alice["headers"])).json()["incoming"] == []

            response = await client.post("/api/friends", headers=bob["headers"], json={"username": "alice"})
            assert response.status_code == 403 and response.json()["error"]["code"] == "friend_request_refused"
            response = await client.post("/api/friends", headers=alice["headers"], json={"username": "bob"})
            assert response.status_code == 409 and response.json()["error"]["code"] == "user_blocked"
            response = await client.post("/api/dms", headers=bob["headers"], json={"username": "alice"})
            assert response.status_code == 403 and response.json()["error"]["code"] == "dm_blocked"
            # the existing DM: refused over REST and over the websocket, on the other replica too
            response = await client.post(f"/api/channels/{dm}/messages", headers=bob["headers"],
                                         json={"data": {"text": "hi"}})
            assert response.status_code == 403
            reply = await bob_ws.request("publish", channel=dm, data={"text": "hi"})
            assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
            assert (await client.get("/api/users/alice", headers=bob["headers"])).json()["can_dm"] is False

            # a mention from bob does not notify alice; carol's would (same room)
            await client.post("/api/rooms/general/join", headers=alice["headers"])
            await say(client, bob, "room:general", {"text": "@alice hello"})
            await asyncio.sleep(0.5)
            notes = (await client.get("/api/notifications", headers=alice["headers"])).json()["notifications"]
            assert notes == []

            response = await client.put("/api/blocks/alice", headers=alice["headers"])
            assert response.status_code == 400 and response.json()["error"]["code"] == "block_self"
            assert (await client.delete("/api/blocks/bob", headers=alice["headers"])).status_code == 204
            response = await client.delete("/api/blocks/bob", headers=alice["headers"])
            assert response.status_code == 404 and response.json()["error"]["code"] == "block_not_found"
            reply = await bob_ws.request("publish", channel=dm, data={"text": "friends again?"})
            assert reply["ok"] is True, reply
        finally:
            await bob_ws.close()


async def test_friends_only_dms(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        dm = (await client.post("/api/dms", headers=bob["headers"], json={"username": "alice"})).json()["channel"]
        await client.patch("/api/users/me", headers=alice["headers"], json={"dm_policy": "friends"})
        response = await client.post("/api/dms", headers=bob["headers"], json={"username": "alice"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "dm_not_allowed"
        response = await client.post(f"/api/channels/{dm}/messages", headers=bob["headers"],
                                     json={"data": {"text": "hi"}})
        assert response.status_code == 403
        # alice may still write to bob (his setting is everyone)
        await say(client, alice, dm, {"text": "hello bob"})
        await client.post("/api/friends", headers=bob["headers"], json={"username": "alice"})
        await client.post("/api/friends/bob/accept", headers=alice["headers"])
        await say(client, bob, dm, {"text": "now we are friends"})
        assert (await client.get("/api/users/alice", headers=bob["headers"])).json()["can_dm"] is True


async def test_friends_see_each_other_come_and_go_live_with_last_seen(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        await client.post("/api/friends", headers=alice["headers"], json={"username": "bob"})
        await client.post("/api/friends/alice/accept", headers=bob["headers"])
        alice_ws = await listen(one, alice)
        try:
            bob_ws = await WsClient.connect(two.base_url, token_of(bob))
            event = await personal(alice_ws, "friend_presence")
            assert event == {"type": "friend_presence", "username": "bob", "online": True, "last_seen_at": None}
            await bob_ws.close()
            event = await personal(alice_ws, "friend_presence")
            assert event["username"] == "bob" and event["online"] is False and event["last_seen_at"]
            profile = (await client.get("/api/users/bob", headers=alice["headers"])).json()
            assert profile["online"] is False and profile["last_seen_at"] == event["last_seen_at"]
            friends = (await client.get("/api/friends", headers=alice["headers"])).json()["friends"]
            assert friends[0]["online"] is False and friends[0]["last_seen_at"] == event["last_seen_at"]
            # carol is no friend and shares no room: she sees neither
            seen = (await client.get("/api/users/bob", headers=carol["headers"])).json()
            assert seen["online"] is None and seen["last_seen_at"] is None
            # sharing a room shows it
            for who in (bob, carol):
                await client.post("/api/rooms/general/join", headers=who["headers"])
            assert (await client.get("/api/users/bob", headers=carol["headers"])).json()["online"] is False
        finally:
            await alice_ws.close()


async def test_a_second_connection_does_not_announce_and_the_last_one_does(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        await client.post("/api/friends", headers=u["alice"]["headers"], json={"username": "bob"})
        await client.post("/api/friends/alice/accept", headers=u["bob"]["headers"])
        alice_ws = await listen(app_server, u["alice"])
        try:
            first = await WsClient.connect(app_server.base_url, token_of(u["bob"]))
            assert (await personal(alice_ws, "friend_presence"))["online"] is True
            second = await WsClient.connect(app_server.base_url, token_of(u["bob"]))
            # answered once the upgrade's token is checked and the connection counted
            assert (await second.request("subscribe", channel=f"user:{u['bob']['id']}"))["ok"]
            await first.close()
            with pytest.raises(asyncio.TimeoutError):
                await personal(alice_ws, "friend_presence", timeout=0.7)
            await second.close()
            assert (await personal(alice_ws, "friend_presence"))["online"] is False
        finally:
            await alice_ws.close()


async def drain(ws: WsClient, quiet: float) -> None:
    """Skip pushes until none has come for `quiet` seconds."""
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            await ws.push(timeout=quiet)


async def test_a_reload_within_the_grace_announces_nothing_and_leaves_last_seen(app_server: AppServer) -> None:
    """A page reload closes the last socket and opens a new one a moment later: friends must not see
    the member flicker offline and online (and no last_seen write happens)."""
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        await client.post("/api/friends", headers=u["alice"]["headers"], json={"username": "bob"})
        await client.post("/api/friends/alice/accept", headers=u["bob"]["headers"])
        alice_ws = await listen(app_server, u["alice"])
        try:
            bob = await WsClient.connect(app_server.base_url, token_of(u["bob"]))
            assert (await personal(alice_ws, "friend_presence"))["online"] is True
            for _ in range(3):
                before = (await client.get("/api/users/bob", headers=u["alice"]["headers"])).json()["last_seen_at"]
                started = time.monotonic()
                await bob.close()
                bob = await WsClient.connect(app_server.base_url, token_of(u["bob"]))
                assert (await bob.request("subscribe", channel=f"user:{u['bob']['id']}"))["ok"]
                if time.monotonic() - started < OFFLINE_GRACE_SECONDS / 2:
                    break
                # A loaded machine took most of the grace to reload: that was no reload "within the
                # grace". Let whatever friends were told arrive, and reload again.
                await drain(alice_ws, OFFLINE_GRACE_SECONDS + 1)
            else:
                pytest.fail("three reloads each took more than half the grace")
            with pytest.raises(asyncio.TimeoutError):
                await personal(alice_ws, "friend_presence", timeout=OFFLINE_GRACE_SECONDS + 1)
            assert (await client.get("/api/users/bob", headers=u["alice"]["headers"])).json()["last_seen_at"] == before
            await bob.close()
            gone = await personal(alice_ws, "friend_presence")
            assert gone["online"] is False and gone["last_seen_at"]
        finally:
            await alice_ws.close()


async def test_every_people_write_counts_against_the_write_limit(backend: dict[str, Any]) -> None:
    async with AppServer(make_settings(**backend, RATE_LIMIT_WRITE="4/60")) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        alice = u["alice"]
        codes = [
            (await client.put("/api/blocks/bob", headers=alice["headers"])).status_code,
            (await client.delete("/api/blocks/bob", headers=alice["headers"])).status_code,
            (await client.patch("/api/users/me", json={"bio": "x"}, headers=alice["headers"])).status_code,
            (await client.post("/api/friends", json={"username": "bob"}, headers=alice["headers"])).status_code,
            (await client.delete("/api/friends/bob", headers=alice["headers"])).status_code,
        ]
        assert codes == [200, 204, 200, 200, 429]
