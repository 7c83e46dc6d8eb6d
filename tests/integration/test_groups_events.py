"""Groups and events (docs/community.md, "Groups" and "Events"): membership with rooms, private
groups hidden from non-members (404), requests approved and declined, roles; events with paging,
RSVP counters and a capacity that concurrent answers cannot exceed; live streams across two
replicas with recovery; reminders sent exactly once by two replicas' loops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.db.tables import notifications
from server.services.event_reminders import EventReminders
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.live import listen, personal, replicas, token_of
from tests.support.wsclient import WsClient

LIMITS = {"RATE_LIMIT_WRITE": "1000/60"}


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend, **LIMITS) as both:
        yield both


async def stream_push(ws: WsClient, channel: str, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The `data` of the next push of `kind` on `channel` (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        push = await ws.push("message", timeout=max(0.1, deadline - time.monotonic()))
        if push["channel"] == channel and push["data"].get("type") == kind:
            return dict(push["data"])


def field_errors(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(d["field"], d["code"]) for d in response.json()["error"]["details"]}


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


async def pages(client: httpx.AsyncClient, who: dict[str, Any], path: str, **params: Any) -> list[list[int]]:
    """Every page of a cursor-paged list, as ids."""
    out: list[list[int]] = []
    cursor = None
    while True:
        response = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})},
                                    headers=who["headers"])
        assert response.status_code == 200, response.text
        out.append([item["id"] for item in response.json()["items"]])
        cursor = response.json()["next"]
        if cursor is None:
            return out


def at(hours: float) -> str:
    """An ISO time `hours` from now, written with a +02:00 offset (the server stores UTC)."""
    return (datetime.now(UTC) + timedelta(hours=hours)).astimezone(timezone(timedelta(hours=2))).isoformat()


async def make_event(client: httpx.AsyncClient, who: dict[str, Any], title: str, start: float,
                     hours: float = 2, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/events", json={"title": title, "starts_at": at(start),
                                                      "ends_at": at(start + hours), **fields}, headers=who["headers"])
    assert response.status_code == 201, response.text
    return dict(response.json())


async def room_state(client: httpx.AsyncClient, who: dict[str, Any], room: str) -> tuple[int, Any]:
    response = await client.get(f"/api/rooms/{room.removeprefix('room:')}", headers=who["headers"])
    return response.status_code, response.json().get("role") if response.status_code == 200 else None


async def test_groups_membership_rooms_requests_roles_and_privacy(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol", "dave")
        alice, bob, carol, dave = u["alice"], u["bob"], u["carol"], u["dave"]

        # bad input: field errors, unknown fields refused; names unique whatever their case
        assert field_errors(await client.post("/api/groups", json={"name": " x ", "colour": 1},
                                              headers=alice["headers"])) == {("name", "value_error"),
                                                                             ("colour", "extra_forbidden")}
        assert ("visibility", "literal_error") in field_errors(await client.post(
            "/api/groups", json={"name": "Builders", "visibility": "secret"}, headers=alice["headers"]))
        assert ("description", "string_too_long") in field_errors(await client.post(
            "/api/groups", json={"name": "Builders", "description": "d" * 2001}, headers=alice["headers"]))
        created = await client.post("/api/groups", json={"name": "  Redstone   Builders ", "description": " Wires \n"},
                                    headers=alice["headers"])
        assert created.status_code == 201, created.text
        public = created.json()
        assert (public["name"], public["slug"], public["description"], public["visibility"], public["members"],
                public["my_role"]) == ("Redstone Builders", "redstone-builders", "Wires", "public", 1, "owner")
        assert public["room"].startswith("room:redstone-builders-g")
        assert await room_state(client, alice, public["room"]) == (200, "owner")
        assert code(await client.post("/api/groups", json={"name": "REDSTONE builders"},
                                      headers=bob["headers"])) == (409, "group_name_taken")

        # a public group: joined at once (and its room), live on the OTHER replica
        carol_ws = await WsClient.connect(two.base_url, token_of(carol))
        alice_ws = await listen(two, alice)
        try:
            assert (await carol_ws.request("subscribe", channel=f"live:group:{public['id']}"))["ok"]
            joined = await client.post(f"/api/groups/{public['id']}/join", headers=bob["headers"])
            assert (joined.json()["my_role"], joined.json()["members"]) == ("member", 2)
            again = await client.post(f"/api/groups/{public['id']}/join", headers=bob["headers"])
            assert (again.json()["my_role"], again.json()["members"]) == ("member", 2)  # idempotent
            pushed = await stream_push(carol_ws, f"live:group:{public['id']}", "member_joined")
            assert (pushed["group_id"], pushed["user"]["username"], pushed["members"]) == (public["id"], "bob", 2)
            assert await room_state(client, bob, public["room"]) == (200, "member")
            assert code(await client.post(f"/api/groups/{public['id']}/leave",
                                          headers=alice["headers"])) == (409, "owner_cannot_leave")
            assert code(await client.post(f"/api/groups/{public['id']}/leave",
                                          headers=dave["headers"])) == (409, "not_a_member")
            assert (await client.post(f"/api/groups/{public['id']}/leave", headers=bob["headers"])).status_code == 204
            left = await stream_push(carol_ws, f"live:group:{public['id']}", "member_left")
            assert (left["user"]["username"], left["members"]) == ("bob", 1)
            assert await room_state(client, bob, public["room"]) == (200, None)  # public room, no longer in it
            shown = (await client.get(f"/api/groups/{public['id']}", headers=carol["headers"])).json()
            assert (shown["members"], shown["my_role"]) == (1, None)

            # a private group: hidden from non-members (404 everywhere, forbidden stream)
            secret = (await client.post("/api/groups", json={"name": "Secret Club", "visibility": "private"},
                                        headers=alice["headers"])).json()
            sid = secret["id"]
            assert await room_state(client, alice, secret["room"]) == (200, "owner")
            assert (await room_state(client, carol, secret["room"]))[0] == 404  # a private room
            for path in (f"/api/groups/{sid}", f"/api/groups/{sid}/members", f"/api/groups/{sid}/requests",
                         f"/api/events?group={sid}", "/api/groups/999999"):
                response = await client.get(path, headers=carol["headers"])
                assert code(response) == (404, "group_not_found"), (path, response.text)
            assert code(await client.patch(f"/api/groups/{sid}", json={"name": "Mine now"},
                                           headers=carol["headers"])) == (404, "group_not_found")
            denied = await carol_ws.request("subscribe", channel=f"live:group:{sid}")
            assert not denied["ok"] and denied["error"]["code"] == "forbidden"
            assert await pages(client, carol, "/api/groups", limit=1) == [[public["id"]]]
            assert await pages(client, alice, "/api/groups", limit=1) == [[sid], [public["id"]]]
            assert await one.resources.groups.can_read(sid, u["carol"]["id"]) is False
            assert await one.resources.groups.can_read(public["id"], u["carol"]["id"]) is True
            assert await one.resources.groups.can_post(public["id"], u["carol"]["id"]) is False

            # requests: pending until the owner or a moderator approves; the owner hears of them
            assert (await alice_ws.request("subscribe", channel=f"live:group:{sid}"))["ok"]
            for who in (bob, carol, dave):
                asked = await client.post(f"/api/groups/{sid}/join", headers=who["headers"])
                assert asked.json() == {"id": sid, "my_role": "pending"}
            request = await stream_push(alice_ws, f"live:group:{sid}", "join_request")
            assert (request["group_id"], request["user"]["username"]) == (sid, "bob")
            told = await personal(alice_ws, "notification")  # (skips the other pushes)
            assert (told["notification"]["kind"], told["notification"]["url"], told["notification"]["title"]) == (
                "group_request", f"/groups/{sid}", "bob asks to join Secret Club")
            assert code(await client.get(f"/api/groups/{sid}", headers=bob["headers"])) == (404, "group_not_found")
            assert code(await client.post(f"/api/groups/{sid}/members/bob/role", json={"role": "moderator"},
                                          headers=alice["headers"]))[0] == 405
            requests = (await client.get(f"/api/groups/{sid}/requests", headers=alice["headers"])).json()
            assert [r["user"]["username"] for r in requests["items"]] == ["bob", "carol", "dave"]
            approved = await client.post(f"/api/groups/{sid}/requests/bob/approve", headers=alice["headers"])
            assert approved.json() == {"user": approved.json()["user"], "role": "member"}
            assert approved.json()["user"]["username"] == "bob"
            assert (await stream_push(alice_ws, f"live:group:{sid}", "member_joined"))["members"] == 2
            assert await room_state(client, bob, secret["room"]) == (200, "member")
            assert code(await client.post(f"/api/groups/{sid}/requests/bob/approve",
                                          headers=alice["headers"])) == (404, "request_not_found")

            # roles: the owner makes bob a moderator; a moderator acts on requests but not on roles
            assert code(await client.get(f"/api/groups/{sid}/requests", headers=carol["headers"])) == (
                404, "group_not_found")
            role = await client.put(f"/api/groups/{sid}/members/bob/role", json={"role": "moderator"},
                                    headers=alice["headers"])
            assert role.json()["role"] == "moderator"
            assert await room_state(client, bob, secret["room"]) == (200, "moderator")
            assert field_errors(await client.put(f"/api/groups/{sid}/members/bob/role", json={"role": "owner"},
                                                 headers=alice["headers"])) == {("role", "literal_error")}
            assert code(await client.put(f"/api/groups/{sid}/members/alice/role", json={"role": "member"},
                                         headers=alice["headers"])) == (404, "member_not_found")
            assert code(await client.put(f"/api/groups/{sid}/members/carol/role", json={"role": "moderator"},
                                         headers=bob["headers"])) == (403, "not_group_owner")
            assert (await client.post(f"/api/groups/{sid}/requests/dave/decline",
                                      headers=bob["headers"])).status_code == 204
            assert (await client.post(f"/api/groups/{sid}/requests/carol/approve",
                                      headers=bob["headers"])).status_code == 200
            assert code(await client.get(f"/api/groups/{sid}/requests", headers=carol["headers"])) == (
                403, "not_group_moderator")
            assert code(await client.get(f"/api/groups/{sid}", headers=dave["headers"])) == (404, "group_not_found")
            carols = (await client.get(f"/api/groups/{sid}", headers=carol["headers"])).json()
            assert (carols["my_role"], carols["members"], carols["name"]) == ("member", 3, "Secret Club")
            assert await one.resources.groups.can_post(sid, u["carol"]["id"]) is True
            members = await client.get(f"/api/groups/{sid}/members", params={"limit": 2}, headers=carol["headers"])
            first = members.json()
            rest = (await client.get(f"/api/groups/{sid}/members", params={"cursor": first["next"]},
                                     headers=carol["headers"])).json()
            assert [(m["user"]["username"], m["role"]) for m in first["items"] + rest["items"]] == [
                ("alice", "owner"), ("bob", "moderator"), ("carol", "member")]
            assert rest["next"] is None
            assert ("cursor", "invalid_cursor") in field_errors(await client.get(
                f"/api/groups/{sid}/members", params={"cursor": "nope"}, headers=carol["headers"]))

            # edits by staff, live to the members; the approved member was notified
            assert code(await client.patch(f"/api/groups/{sid}", json={"description": "x"},
                                           headers=carol["headers"])) == (403, "not_group_moderator")
            edited = await client.patch(f"/api/groups/{sid}", json={"name": "Secret Society", "description": None},
                                        headers=bob["headers"])
            assert (edited.json()["name"], edited.json()["slug"], edited.json()["description"],
                    edited.json()["my_role"]) == ("Secret Society", "secret-society", None, "moderator")
            update = await stream_push(alice_ws, f"live:group:{sid}", "group_updated")
            assert (update["group"]["name"], update["group"]["my_role"]) == ("Secret Society", None)
            assert code(await client.patch(f"/api/groups/{sid}", json={"name": "redstone BUILDERS"},
                                           headers=bob["headers"])) == (409, "group_name_taken")
            kinds = await one.resources.db.fetch_all("test.notifications", sa.select(
                notifications.c.user_id, notifications.c.kind).where(
                notifications.c.kind.in_(("group_request", "group_approved"))))
            assert sorted((r["user_id"], r["kind"]) for r in kinds) == sorted(
                [(alice["id"], "group_request")] * 3 + [(bob["id"], "group_approved"), (carol["id"], "group_approved")])
            # dave, declined, may ask again; leaving withdraws a request
            again = await client.post(f"/api/groups/{sid}/join", headers=dave["headers"])
            assert again.json()["my_role"] == "pending"
            assert (await client.post(f"/api/groups/{sid}/leave", headers=dave["headers"])).status_code == 204
            assert (await client.get(f"/api/groups/{sid}/requests", headers=bob["headers"])).json()["items"] == []
        finally:
            await carol_ws.close()
            await alice_ws.close()


async def test_events_paging_rsvp_capacity_live_and_recovery(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        names = ("alice", "bob", "carol", "dave", "erin", "frank", "gina")
        u = await people(client, *names)
        alice, bob, carol = u["alice"], u["bob"], u["carol"]

        # bad input: field errors for each field
        base = {"title": "Build night", "starts_at": at(5), "ends_at": at(7)}
        bad: dict[str, tuple[dict[str, Any], tuple[str, str]]] = {
            "starts_at": ({"starts_at": "2026-12-31T20:00:00"}, ("starts_at", "timezone_aware")),
            "number": ({"starts_at": 1700000000}, ("starts_at", "value_error")),
            "ends": ({"ends_at": at(4)}, ("ends_at", "value_error")),
            "long": ({"ends_at": at(5 + 24 * 40)}, ("ends_at", "too_long")),
            "zone": ({"timezone": "Mars/Olympus"}, ("timezone", "value_error")),
            "server": ({"place": {"kind": "server", "server": "bad/name"}}, ("place.server.server", "value_error")),
            "text": ({"place": {"kind": "text", "text": "t" * 201}}, ("place.text.text", "string_too_long")),
            "kind": ({"place": {"kind": "moon"}}, ("place", "union_tag_invalid")),
            "capacity": ({"capacity": 0}, ("capacity", "greater_than_equal")),
            "title": ({"title": "  "}, ("title", "value_error")),
            "extra": ({"colour": "red"}, ("colour", "extra_forbidden")),
        }
        for name, (change, expected) in bad.items():
            response = await client.post("/api/events", json={**base, **change}, headers=alice["headers"])
            assert expected in field_errors(response), (name, response.text)
        assert ("when", "literal_error") in field_errors(await client.get(
            "/api/events", params={"when": "soon"}, headers=alice["headers"]))
        assert ("cursor", "invalid_cursor") in field_errors(await client.get(
            "/api/events", params={"cursor": "Zm9v"}, headers=alice["headers"]))

        # create, list upcoming (soonest first) and past (latest first) with cursor paging
        late = await make_event(client, alice, "Late", 30, place={"kind": "server", "server": "Survival 1.21"},
                                timezone="Europe/Paris", description=" Bring wood ")
        assert (late["title"], late["timezone"], late["place"], late["description"], late["capacity"],
                late["group_id"], late["counts"], late["my_status"], late["full"], late["author"]["username"]) == (
            "Late", "Europe/Paris", {"kind": "server", "server": "Survival 1.21"}, "Bring wood", None, None,
            {"going": 0, "interested": 0, "not_going": 0}, None, False, "alice")
        starts = datetime.fromisoformat(late["starts_at"])
        assert starts.utcoffset() == timedelta(0)  # stored and answered in UTC
        soon = await make_event(client, bob, "Soon", 3, place={"kind": "text", "text": "Spawn"}, capacity=2)
        middle = await make_event(client, alice, "Middle", 10)
        ongoing = await make_event(client, alice, "Ongoing", -1, hours=3)
        old = await make_event(client, alice, "Old", -48)
        older = await make_event(client, alice, "Older", -72)
        assert await pages(client, carol, "/api/events", limit=2) == [[ongoing["id"], soon["id"]],
                                                                       [middle["id"], late["id"]]]
        assert await pages(client, carol, "/api/events", when="past", limit=1) == [[old["id"]], [older["id"]]]

        # RSVPs: counters in the answer, the event and the live streams (on the OTHER replica)
        carol_ws = await WsClient.connect(two.base_url, token_of(carol))
        try:
            for channel in (f"live:event:{soon['id']}", "live:events:all"):
                assert (await carol_ws.request("subscribe", channel=channel))["ok"]
            answer = await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "interested"},
                                       headers=alice["headers"])
            assert answer.json() == {"counts": {"going": 0, "interested": 1, "not_going": 0}, "my_status": "interested"}
            pushed = await stream_push(carol_ws, f"live:event:{soon['id']}", "rsvp")
            assert (pushed["event_id"], pushed["counts"], pushed["user"]["username"], pushed["status"]) == (
                soon["id"], {"going": 0, "interested": 1, "not_going": 0}, "alice", "interested")
            listed = await stream_push(carol_ws, "live:events:all", "event_updated")
            assert (listed["event"]["id"], listed["event"]["counts"]["interested"], listed["event"]["my_status"]) == (
                soon["id"], 1, None)

            # capacity 2, five members answer "going" at once: exactly two get in
            racers = [u[n] for n in ("bob", "carol", "dave", "erin", "frank")]
            results = await asyncio.gather(*(client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "going"},
                                                         headers=r["headers"]) for r in racers))
            statuses = sorted(r.status_code for r in results)
            assert statuses == [200, 200, 409, 409, 409], [r.text for r in results]
            assert all(r.json()["error"]["code"] == "event_full" for r in results if r.status_code == 409)
            shown = (await client.get(f"/api/events/{soon['id']}", headers=alice["headers"])).json()
            assert (shown["counts"], shown["full"], shown["my_status"]) == (
                {"going": 2, "interested": 1, "not_going": 0}, True, "interested")
            assert code(await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "going"},
                                          headers=alice["headers"])) == (409, "event_full")
            winner = next(r for r, res in zip(racers, results, strict=True) if res.status_code == 200)
            moved = await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "not_going"},
                                      headers=winner["headers"])
            assert moved.json()["counts"] == {"going": 1, "interested": 1, "not_going": 1}
            assert (await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "going"},
                                      headers=alice["headers"])).json()["counts"] == {
                "going": 2, "interested": 0, "not_going": 1}
            assert field_errors(await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "maybe"},
                                                  headers=alice["headers"])) == {("status", "literal_error")}
            assert code(await client.post(f"/api/events/{old['id']}/rsvp", json={"status": "going"},
                                          headers=alice["headers"])) == (409, "event_over")

            # recovery: carol drops, answers change, she resubscribes with `since` and gets them
            await carol_ws.close()
            carol_ws = await WsClient.connect(two.base_url, token_of(carol))
            sub = await carol_ws.request("subscribe", channel=f"live:event:{soon['id']}")
            since = {"offset": sub["offset"], "epoch": sub["epoch"]}
            await carol_ws.close()
            await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "interested"}, headers=alice["headers"])
            await client.post(f"/api/events/{soon['id']}/rsvp", json={"status": "going"}, headers=u["gina"]["headers"])
            carol_ws = await WsClient.connect(one.base_url, token_of(carol))
            back = await carol_ws.request("subscribe", channel=f"live:event:{soon['id']}", since=since)
            assert back["ok"] and back["recovered"] is True, back
            missed = [m["data"] for m in back["missed"]]
            assert [(m["type"], m["user"]["username"], m["status"]) for m in missed] == [
                ("rsvp", "alice", "interested"), ("rsvp", "gina", "going")]
            assert missed[-1]["counts"] == {"going": 2, "interested": 1, "not_going": 1}

            # edits: organisers only; the times are checked together
            assert code(await client.patch(f"/api/events/{soon['id']}", json={"title": "Mine"},
                                           headers=carol["headers"])) == (403, "not_event_organiser")
            assert ("ends_at", "ends_before_start") in field_errors(await client.patch(
                f"/api/events/{soon['id']}", json={"starts_at": at(8)}, headers=bob["headers"]))
            assert ("title", "missing") in field_errors(await client.patch(
                f"/api/events/{soon['id']}", json={"title": None}, headers=bob["headers"]))
            assert (await carol_ws.request("subscribe", channel="live:events:all"))["ok"]
            edited = (await client.patch(f"/api/events/{soon['id']}", json={"title": "Sooner", "place": None,
                                                                              "capacity": 5},
                                         headers=bob["headers"])).json()
            assert (edited["title"], edited["place"], edited["capacity"], edited["full"],
                    edited["counts"]["going"]) == ("Sooner", None, 5, False, 2)
            assert (await stream_push(carol_ws, "live:events:all", "event_updated"))["event"]["title"] == "Sooner"
            assert code(await client.delete(f"/api/events/{soon['id']}", headers=carol["headers"])) == (
                403, "not_event_organiser")
            assert (await client.delete(f"/api/events/{soon['id']}", headers=bob["headers"])).status_code == 204
            assert await stream_push(carol_ws, "live:events:all", "event_deleted") == {
                "type": "event_deleted", "id": soon["id"]}
            assert code(await client.get(f"/api/events/{soon['id']}", headers=bob["headers"])) == (
                404, "event_not_found")

            # a private group's events: its members only (404, forbidden stream, not in lists)
            secret = (await client.post("/api/groups", json={"name": "Night Owls", "visibility": "private"},
                                        headers=alice["headers"])).json()
            assert code(await client.post("/api/events", json={**base, "group_id": secret["id"]},
                                          headers=carol["headers"])) == (404, "group_not_found")
            public = (await client.post("/api/groups", json={"name": "Day Birds"}, headers=alice["headers"])).json()
            assert code(await client.post("/api/events", json={**base, "group_id": public["id"]},
                                          headers=carol["headers"])) == (403, "group_event_forbidden")
            hidden = await make_event(client, alice, "Owls only", 4, group_id=secret["id"])
            assert hidden["group_id"] == secret["id"]
            assert code(await client.get(f"/api/events/{hidden['id']}", headers=carol["headers"])) == (
                404, "event_not_found")
            for method, path, body in (("PATCH", f"/api/events/{hidden['id']}", {"title": "x"}),
                                       ("DELETE", f"/api/events/{hidden['id']}", None),
                                       ("POST", f"/api/events/{hidden['id']}/rsvp", {"status": "going"})):
                response = await client.request(method, path, json=body, headers=carol["headers"])
                assert code(response) == (404, "event_not_found"), (method, response.text)
            denied = await carol_ws.request("subscribe", channel=f"live:event:{hidden['id']}")
            assert not denied["ok"] and denied["error"]["code"] == "forbidden"
            assert hidden["id"] not in [e for p in await pages(client, carol, "/api/events") for e in p]
            assert hidden["id"] in [e for p in await pages(client, alice, "/api/events") for e in p]
            assert await pages(client, alice, "/api/events", group=secret["id"]) == [[hidden["id"]]]
            # ...and once carol is a member, she sees it; its changes go to the group's stream only
            await client.post(f"/api/groups/{secret['id']}/join", headers=carol["headers"])
            await client.post(f"/api/groups/{secret['id']}/requests/carol/approve", headers=alice["headers"])
            assert (await client.get(f"/api/events/{hidden['id']}", headers=carol["headers"])).status_code == 200
            assert (await carol_ws.request("subscribe", channel=f"live:group:{secret['id']}"))["ok"]
            await client.post(f"/api/events/{hidden['id']}/rsvp", json={"status": "going"}, headers=carol["headers"])
            via_group = await stream_push(carol_ws, f"live:group:{secret['id']}", "event_updated")
            assert via_group["event"]["counts"]["going"] == 1
            await client.post(f"/api/events/{middle['id']}/rsvp", json={"status": "going"}, headers=carol["headers"])
            public_update = await stream_push(carol_ws, "live:events:all", "event_updated")
            assert public_update["event"]["id"] == middle["id"]  # the private event never reached this stream
        finally:
            await carol_ws.close()


async def test_reminder_sent_once_by_two_replicas(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol", "dave")
        alice, bob, carol, dave = u["alice"], u["bob"], u["carol"], u["dave"]
        due = await make_event(client, alice, "Castle raid", 0.5)  # within EVENT_REMINDER_MINUTES (60)
        later = await make_event(client, alice, "Much later", 5)
        for who, status in ((bob, "going"), (carol, "interested"), (dave, "not_going")):
            await client.post(f"/api/events/{due['id']}/rsvp", json={"status": status}, headers=who["headers"])
            await client.post(f"/api/events/{later['id']}/rsvp", json={"status": "going"}, headers=who["headers"])
        bob_ws = await listen(two, bob)
        loops = [EventReminders(server.resources, 60, interval=0.2) for server in (one, two, one, two)]
        tasks = [asyncio.create_task(loop.run()) for loop in loops]
        try:
            told = await personal(bob_ws, "notification")
            assert (told["notification"]["kind"], told["notification"]["url"], told["notification"]["title"]) == (
                "event_reminder", f"/events/{due['id']}", "Starting soon: Castle raid")
            await asyncio.sleep(1.0)  # every loop ticked several times more
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bob_ws.close()
        rows = await one.resources.db.fetch_all("test.reminders", sa.select(notifications.c.user_id).where(
            notifications.c.kind == "event_reminder"))
        assert sorted(r["user_id"] for r in rows) == sorted([bob["id"], carol["id"]])
        assert await EventReminders(two.resources, 60).tick() == 0  # a restarted replica sends nothing again
        # moving the start re-arms the reminder
        await client.patch(f"/api/events/{due['id']}", json={"starts_at": at(0.75), "ends_at": at(2)},
                           headers=alice["headers"])
        assert await EventReminders(two.resources, 60).tick() == 1
        assert await EventReminders(one.resources, 60).tick() == 0
        rows = await one.resources.db.fetch_all("test.reminders", sa.select(notifications.c.user_id).where(
            notifications.c.kind == "event_reminder"))
        assert len(rows) == 4


async def test_group_posts_are_for_the_group_only_and_live_on_its_stream(pair: tuple[AppServer, AppServer]) -> None:
    """A private group's posts: members read and write them (live on `live:group:<id>`, on the
    other replica too); to anyone else the post, its comments and the group's list are 404, and
    group posts never show in the friends or everyone feeds."""
    one, two = pair
    async with one.client() as client:
        u = await people(client, "owner", "member", "outsider")
        owner, member, outsider = u["owner"], u["member"], u["outsider"]
        group = (await client.post("/api/groups", json={"name": "Builders", "visibility": "private"},
                                   headers=owner["headers"])).json()
        gid = group["id"]
        assert (await client.post(f"/api/groups/{gid}/join", headers=member["headers"])).json()["my_role"] == "pending"
        assert (await client.post(f"/api/groups/{gid}/requests/member/approve",
                                  headers=owner["headers"])).status_code == 200
        ws = await WsClient.connect(two.base_url, token_of(member))
        try:
            assert (await ws.request("subscribe", channel=f"live:group:{gid}"))["ok"]
            created = await client.post("/api/posts", json={"content": "new castle plans", "group_id": gid},
                                        headers=owner["headers"])
            assert created.status_code == 201, created.text
            post = created.json()
            live = await stream_push(ws, f"live:group:{gid}", "post_created")
            assert live["post"]["id"] == post["id"] and live["post"]["group_id"] == gid
        finally:
            await ws.close()
        listed = (await client.get("/api/posts", params={"group": gid}, headers=member["headers"])).json()
        assert [p["id"] for p in listed["items"]] == [post["id"]]
        assert (await client.post(f"/api/posts/{post['id']}/comments", json={"content": "nice"},
                                  headers=member["headers"])).status_code == 201
        for feed in ("friends", "everyone"):
            items = (await client.get("/api/posts", params={"feed": feed}, headers=owner["headers"])).json()["items"]
            assert post["id"] not in [p["id"] for p in items], feed
        # the outsider: nothing to see, nothing to write
        assert (await client.get(f"/api/posts/{post['id']}", headers=outsider["headers"])).status_code == 404
        assert (await client.get(f"/api/posts/{post['id']}/comments", headers=outsider["headers"])).status_code == 404
        assert (await client.post(f"/api/posts/{post['id']}/like", headers=outsider["headers"])).status_code == 404
        assert (await client.post("/api/posts", json={"content": "let me in", "group_id": gid},
                                  headers=outsider["headers"])).status_code == 404
        outside = await client.get("/api/posts", params={"group": gid}, headers=outsider["headers"])
        assert outside.status_code == 404 or outside.json()["items"] == [], outside.text


async def test_group_rooms_follow_their_groups(backend: dict[str, Any]) -> None:
    """The group is authoritative over its room: its members leave the room by leaving the group
    (the rooms API answers 409 `group_room`), only members are invited into a private group's
    room, and the room is titled with the group's name."""
    from tests.conftest import make_settings

    async with AppServer(make_settings(**backend, **LIMITS)) as server, server.client() as client:
        u = await people(client, "alice", "bob", "carol", "dave")
        alice, bob, carol, dave = u["alice"], u["bob"], u["carol"], u["dave"]

        def path(group: dict[str, Any], action: str | None = None) -> str:
            """The group's room in the rooms API (`/api/rooms/<name>[/<action>]`)."""
            room = f"/api/rooms/{group['room'].removeprefix('room:')}"
            return f"{room}/{action}" if action else room

        # a public group: its room carries the group's name as title; members cannot leave it alone
        guild = (await client.post("/api/groups", json={"name": "Builders Guild"}, headers=alice["headers"])).json()
        room = (await client.get(path(guild), headers=alice["headers"])).json()
        assert (room["channel"], room["title"], room["kind"]) == (guild["room"], "Builders Guild", "room")
        listed = (await client.get("/api/rooms", headers=bob["headers"])).json()["rooms"]
        assert [r["title"] for r in listed if r["channel"] == guild["room"]] == ["Builders Guild"]
        assert (await client.post(f"/api/groups/{guild['id']}/join", headers=bob["headers"])).status_code == 200
        for who in (bob, alice):  # a member, and the owner
            refused = await client.post(path(guild, "leave"), headers=who["headers"])
            assert code(refused) == (409, "group_room")
            assert "leave the group" in refused.json()["error"]["message"]
            assert refused.json()["error"]["details"] == {"group_id": guild["id"]}
        assert await room_state(client, bob, guild["room"]) == (200, "member")
        assert (await client.get(f"/api/groups/{guild['id']}", headers=bob["headers"])).json()["my_role"] == "member"
        # leaving the group leaves the room; a passer-by of the public room (not in the group)
        # joins and leaves it like any room; inviting a non-member into a public group's room is fine
        assert (await client.post(f"/api/groups/{guild['id']}/leave", headers=bob["headers"])).status_code == 204
        assert await room_state(client, bob, guild["room"]) == (200, None)
        assert (await client.post(path(guild, "join"), headers=carol["headers"])).status_code == 200
        assert (await client.post(path(guild, "leave"), headers=carol["headers"])).status_code == 204
        assert await room_state(client, carol, guild["room"]) == (200, None)
        invited = await client.post(path(guild, "invite"), json={"username": "carol"}, headers=alice["headers"])
        assert invited.json() == {"channel": guild["room"], "invited": "carol", "already_member": False}

        # a private group: its room is for its members only, whoever invites
        owls = (await client.post("/api/groups", json={"name": "Night Owls", "visibility": "private"},
                                  headers=alice["headers"])).json()
        room = (await client.get(path(owls), headers=alice["headers"])).json()
        assert (room["title"], room["kind"]) == ("Night Owls", "private_room")
        refused = await client.post(path(owls, "invite"), json={"username": "dave"}, headers=alice["headers"])
        assert code(refused) == (409, "group_room")
        assert "ask to join the group" in refused.json()["error"]["message"]
        assert (await room_state(client, dave, owls["room"]))[0] == 404
        assert (await client.post(f"/api/groups/{owls['id']}/join", headers=dave["headers"])).json()["my_role"] == (
            "pending")
        assert code(await client.post(path(owls, "invite"), json={"username": "dave"},
                                      headers=alice["headers"])) == (409, "group_room")  # a request is not membership
        assert (await room_state(client, dave, owls["room"]))[0] == 404
        assert (await client.post(f"/api/groups/{owls['id']}/requests/dave/approve",
                                  headers=alice["headers"])).status_code == 200
        assert await room_state(client, dave, owls["room"]) == (200, "member")
        again = await client.post(path(owls, "invite"), json={"username": "dave"}, headers=alice["headers"])
        assert again.json() == {"channel": owls["room"], "invited": "dave", "already_member": True}
        assert code(await client.post(path(owls, "leave"), headers=dave["headers"])) == (409, "group_room")
        assert await room_state(client, dave, owls["room"]) == (200, "member")

        # rooms that are not a group's are unchanged
        assert (await client.post("/api/rooms", json={"name": "den", "private": True},
                                  headers=alice["headers"])).status_code == 201
        assert (await client.post("/api/rooms/den/invite", json={"username": "dave"},
                                  headers=alice["headers"])).json()["already_member"] is False
        assert (await client.post("/api/rooms/den/leave", headers=dave["headers"])).status_code == 204
        assert (await room_state(client, dave, "room:den"))[0] == 404


async def test_a_non_ascii_group_name_taken_again_is_a_conflict(backend: dict[str, Any]) -> None:
    """SQLite's lower() folds ASCII only: the service must compare names as the unique index does,
    or the clash the index reports is a 500 (found by schemathesis)."""
    from tests.conftest import make_settings

    async with AppServer(make_settings(**backend, **LIMITS)) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        first = await client.post("/api/groups", json={"name": "Ïûç"}, headers=u["alice"]["headers"])
        assert first.status_code == 201, first.text
        again = await client.post("/api/groups", json={"name": "Ïûç"}, headers=u["bob"]["headers"])
        assert code(again) == (409, "group_name_taken")
