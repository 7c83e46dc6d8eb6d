"""Edit, delete and react (issue 16): events with their own offsets, live across replicas, replayed
by recovery and history so a client that was away ends up showing what one that stayed shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.live import replicas, token_of
from tests.support.wsclient import WsClient

ROOM = "room:general"


class Screen:
    """What a client shows: messages by offset, events applied with the `rev` rule of docs/protocol.md."""

    def __init__(self) -> None:
        self.messages: dict[int, dict[str, Any]] = {}

    def take(self, frame: dict[str, Any]) -> None:
        data = frame["data"]
        if isinstance(data, dict) and data.get("type") in ("edit", "delete", "reaction"):
            self._apply(frame["offset"], data, frame["from"])
            return
        reactions = {r["emoji"]: r["count"] for r in frame.get("reactions", [])}
        self.messages[frame["offset"]] = {"text": None if frame.get("deleted") else data["text"],
                                          "edited": "edited_at" in frame, "deleted": bool(frame.get("deleted")),
                                          "reactions": reactions, "rev": frame.get("rev", 0)}

    def _apply(self, offset: int, event: dict[str, Any], sender: dict[str, Any]) -> None:
        message = self.messages.get(event["target"])
        if message is None or offset <= message["rev"]:
            return
        message["rev"] = offset
        if event["type"] == "edit":
            message.update(text=event["text"], edited=True)
        elif event["type"] == "delete":
            message.update(text=None, deleted=True, reactions={})
        elif event["count"]:
            message["reactions"][event["emoji"]] = event["count"]
        else:
            message["reactions"].pop(event["emoji"], None)

    def shown(self) -> dict[int, tuple[Any, ...]]:
        return {offset: (m["text"], m["edited"], m["deleted"], tuple(sorted(m["reactions"].items())))
                for offset, m in self.messages.items()}


async def stored_screen(client: httpx.AsyncClient, who: dict[str, Any], channel: str = ROOM) -> Screen:
    """The whole channel read back over REST, oldest first."""
    screen, since = Screen(), 0
    while True:
        page = (await client.get(f"/api/channels/{channel}/messages", params={"since": since, "limit": 200},
                                 headers=who["headers"])).json()
        for frame in page["messages"]:
            screen.take(frame)
        if page["next_since"] is None:
            return screen
        since = page["next_since"]


async def room_pushes(ws: WsClient, count: int, channel: str = ROOM) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        push = await ws.push("message", timeout=5)
        if push["channel"] == channel:
            out.append(push)
    return out


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend, WS_PUBLISH_RATE=200, RATE_LIMIT_ACTIONS="post=1000/60,reaction=1000/60") as both:
        yield both


async def test_a_client_that_was_away_shows_what_one_that_stayed_shows(pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob = u["alice"], u["bob"]
        for who in u.values():
            await client.post("/api/rooms/general/join", headers=who["headers"])
        first = [await say(client, alice, ROOM, {"text": f"message {n}"}) for n in range(4)]

        stayed = await WsClient.connect(two.base_url, token_of(u["carol"]))
        away = await WsClient.connect(one.base_url, token_of(bob))
        alice_ws = await WsClient.connect(one.base_url, token_of(alice))
        try:
            assert (await stayed.request("subscribe", channel=ROOM))["ok"]
            seen = await away.request("subscribe", channel=ROOM)
            live, returning = await stored_screen(client, u["carol"]), await stored_screen(client, bob)
            position = {"offset": seen["offset"], "epoch": seen["epoch"]}
            await away.close()

            # while bob is away: edits, reactions (websocket and REST), a delete, new messages
            replies = [
                await alice_ws.request("edit", channel=ROOM, offset=first[0], data={"text": "message 0, fixed"}),
                await alice_ws.request("react", channel=ROOM, offset=first[1], emoji="👍"),
                await alice_ws.request("react", channel=ROOM, offset=first[1], emoji="👍🏽"),
                await alice_ws.request("edit", channel=ROOM, offset=first[0], data={"text": "message 0, fixed twice"}),
                await alice_ws.request("delete", channel=ROOM, offset=first[2]),
            ]
            assert all(r["ok"] for r in replies), replies
            offsets = [r["offset"] for r in replies]
            assert offsets == sorted(offsets) and len(set(offsets)) == 5 and offsets[0] > first[-1]
            rest = await client.post(f"/api/channels/{ROOM}/messages/{first[1]}/reactions", json={"emoji": "🎉"},
                                     headers=bob["headers"])
            assert rest.status_code == 200 and rest.json()["offset"] > offsets[-1]
            rest = await client.delete(f"/api/channels/{ROOM}/messages/{first[1]}/reactions",
                                       params={"emoji": "👍🏽"}, headers=alice["headers"])
            assert rest.status_code == 200
            later = await say(client, alice, ROOM, {"text": "after the changes"})
            rest = await client.patch(f"/api/channels/{ROOM}/messages/{later}", json={"data": {"text": "after!"}},
                                      headers=alice["headers"])
            assert rest.status_code == 200, rest.text

            # the subscriber on the other replica saw all of it live, in offset order
            pushes = await room_pushes(stayed, 9)
            assert [p["offset"] for p in pushes] == sorted(p["offset"] for p in pushes)
            for frame in pushes:
                live.take(frame)
            assert [p["data"].get("type") for p in pushes] == [
                "edit", "reaction", "reaction", "edit", "delete", "reaction", "reaction", None, "edit"]
            assert pushes[1]["data"] == {"type": "reaction", "target": first[1], "emoji": "👍", "on": True, "count": 1}
            assert pushes[6]["data"]["on"] is False and pushes[6]["data"]["count"] == 0
            assert pushes[1]["from"]["username"] == "alice" and pushes[5]["from"]["username"] == "bob"

            # bob comes back on the other replica and recovers what he missed
            back = await WsClient.connect(two.base_url, token_of(bob))
            try:
                recovered = await back.request("subscribe", channel=ROOM, since=position)
                assert recovered["recovered"] is True and len(recovered["missed"]) == 9
                for frame in recovered["missed"]:
                    returning.take(frame)
            finally:
                await back.close()
            expected = {
                first[0]: ("message 0, fixed twice", True, False, ()),
                first[1]: ("message 1", False, False, (("🎉", 1), ("👍", 1))),
                first[2]: (None, False, True, ()),
                first[3]: ("message 3", False, False, ()),
                later: ("after!", True, False, ()),
            }
            assert live.shown() == expected
            assert returning.shown() == expected
            # a client starting now reads the same from history (state fields, events skipped by rev)
            assert (await stored_screen(client, u["carol"])).shown() == expected
        finally:
            await stayed.close()
            await alice_ws.close()


async def test_who_may_change_what(pair: tuple[AppServer, AppServer]) -> None:
    one, _ = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob", "carol")
        alice, bob, carol = u["alice"], u["bob"], u["carol"]
        await client.post("/api/rooms", json={"name": "den", "private": True}, headers=carol["headers"])
        secret = await say(client, carol, "room:den", {"text": "carol's secret"})
        for who in (alice, bob):
            await client.post("/api/rooms/general/join", headers=who["headers"])
        mine = await say(client, alice, ROOM, {"text": "alice's"})
        path = f"/api/channels/{ROOM}/messages/{mine}"

        response = await client.patch(path, json={"data": {"text": "bob was here"}}, headers=bob["headers"])
        assert response.status_code == 403
        assert (await client.delete(path, headers=bob["headers"])).status_code == 403
        # a private room bob is not in: every id there is refused, nothing leaks
        for method, url, body in (("PATCH", f"/api/channels/room:den/messages/{secret}", {"data": {"text": "x"}}),
                                  ("DELETE", f"/api/channels/room:den/messages/{secret}", None),
                                  ("POST", f"/api/channels/room:den/messages/{secret}/reactions", {"emoji": "👍"}),
                                  ("GET", f"/api/channels/room:den/messages/{secret}/reactions", None)):
            response = await client.request(method, url, json=body, headers=bob["headers"])
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["error"]["code"] == "message_not_found"
            unknown = await client.request(method, url.replace("room:den", "room:nowhere"), json=body,
                                           headers=bob["headers"])
            assert (unknown.status_code, unknown.json()) == (404, {**response.json(), "error": {
                **response.json()["error"], "request_id": unknown.json()["error"]["request_id"]}})
        # bad input
        for body, field in (({"data": {"text": ""}}, "data.text"), ({"data": {"text": "x", "cid": "y"}}, "data"),
                            ({"data": "text"}, "data")):
            response = await client.patch(path, json=body, headers=alice["headers"])
            assert response.status_code == 422, response.text
            assert response.json()["error"]["details"][0]["field"] == field
        for emoji in ("a", "👍👍", "", "x" * 40, ":thumbsup:"):
            response = await client.post(path + "/reactions", json={"emoji": emoji}, headers=bob["headers"])
            assert response.status_code == 422, (emoji, response.text)
        # An offset past 64 bits matches no route at all (server/openapi/route.py bounds `{x:int}`):
        # a plain 404, never an overflow in the database driver.
        for missing, code in ((f"/api/channels/{ROOM}/messages/999999", "message_not_found"),
                              (f"/api/channels/{ROOM}/messages/{2**63}", "not_found")):
            response = await client.patch(missing, json={"data": {"text": "x"}}, headers=alice["headers"])
            assert response.status_code == 404 and response.json()["error"]["code"] == code, response.text

        # reactions: who reacted
        for who in (bob, carol):
            assert (await client.post(path + "/reactions", json={"emoji": "❤️"}, headers=who["headers"])).is_success
        who_reacted = (await client.get(path + "/reactions", headers=alice["headers"])).json()
        assert who_reacted == {"reactions": [{"emoji": "❤️", "count": 2, "users": [
            {"username": "bob", "display_name": "bob"}, {"username": "carol", "display_name": "carol"}]}]}

        # the author edits; the edit history is for moderators only
        edited = await client.patch(path, json={"data": {"text": "alice's, edited"}}, headers=alice["headers"])
        assert edited.is_success
        assert (await client.get(path + "/edits", headers=alice["headers"])).status_code == 403
        # the owner of a room moderates it: carol deletes in her room, not in general
        await client.post("/api/rooms/den/invite", json={"username": "bob"}, headers=carol["headers"])
        bobs = await say(client, bob, "room:den", {"text": "bob in den"})
        assert (await client.delete(f"/api/channels/room:den/messages/{bobs}", headers=carol["headers"])).is_success
        assert (await client.delete(path, headers=carol["headers"])).status_code == 403
        edits = (await client.get(f"/api/channels/room:den/messages/{bobs}/edits", headers=carol["headers"])).json()
        assert [(e["action"], e["data"]["text"], e["by"]) for e in edits["edits"]] == [
            ("delete", "bob in den", "carol")]
        # a deleted message cannot be changed again
        response = await client.patch(f"/api/channels/room:den/messages/{bobs}", json={"data": {"text": "again"}},
                                      headers=bob["headers"])
        assert response.status_code == 404 and response.json()["error"]["code"] == "message_not_found"
        # an event is not a message: it cannot be edited or reacted to
        event = (await client.post(path + "/reactions", json={"emoji": "🔥"}, headers=bob["headers"])).json()["offset"]
        response = await client.post(f"/api/channels/{ROOM}/messages/{event}/reactions", json={"emoji": "🔥"},
                                      headers=bob["headers"])
        assert response.status_code == 404


async def test_events_are_not_unread_and_do_not_notify(pair: tuple[AppServer, AppServer]) -> None:
    one, _ = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"], u["bob"]
        for who in (alice, bob):
            await client.post("/api/rooms/general/join", headers=who["headers"])
        said = await say(client, alice, ROOM, {"text": "hello"})
        await client.post(f"/api/channels/{ROOM}/read", json={"offset": said}, headers=bob["headers"])
        await client.patch(f"/api/channels/{ROOM}/messages/{said}", json={"data": {"text": "hello @bob"}},
                           headers=alice["headers"])
        await client.post(f"/api/channels/{ROOM}/messages/{said}/reactions", json={"emoji": "👍"},
                          headers=alice["headers"])
        rooms = (await client.get("/api/rooms", headers=bob["headers"])).json()["rooms"]
        assert next(r for r in rooms if r["channel"] == ROOM)["unread"] == 0
        await say(client, alice, ROOM, {"text": "new one"})
        rooms = (await client.get("/api/rooms", headers=bob["headers"])).json()["rooms"]
        assert next(r for r in rooms if r["channel"] == ROOM)["unread"] == 1
        await asyncio.sleep(0.3)  # notifications are written after the commit
        assert (await client.get("/api/notifications", headers=bob["headers"])).json()["notifications"] == []

        # a DM's preview skips events and deleted messages
        dm = (await client.post("/api/dms", json={"username": "bob"}, headers=alice["headers"])).json()["channel"]
        kept = await say(client, alice, dm, {"text": "first"})
        gone = await say(client, alice, dm, {"text": "second"})
        await client.delete(f"/api/channels/{dm}/messages/{gone}", headers=alice["headers"])
        await client.post(f"/api/channels/{dm}/messages/{kept}/reactions", json={"emoji": "😂"}, headers=bob["headers"])
        dms = (await client.get("/api/dms", headers=bob["headers"])).json()["dms"]
        assert dms[0]["last_message"]["text"] == "first" and dms[0]["unread"] == 1
