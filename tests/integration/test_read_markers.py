"""Read markers over the websocket (`read`) and REST: reading a conversation moves the marker,
settles its notifications, and every device of the reader hears it on `user:<id>`, across replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.notifications.events import MessageStored
from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.contract import assert_conforms
from tests.support.live import personal, replicas, token_of
from tests.support.wsclient import WsClient


async def unread_notes(client: httpx.AsyncClient, who: dict[str, Any]) -> int:
    return int((await client.get("/api/notifications/unread", headers=who["headers"])).json()["unread"])


async def room_unread(client: httpx.AsyncClient, who: dict[str, Any], channel: str) -> int:
    rooms = (await client.get("/api/rooms", headers=who["headers"])).json()["rooms"]
    return int(next(r["unread"] for r in rooms if r["channel"] == channel))


async def until(check: Any, expected: Any, timeout: float = 5.0) -> Any:
    """Notifications are written after the publish returns: wait for the state to settle."""
    deadline = time.monotonic() + timeout
    while (value := await check()) != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return value


@pytest.fixture
async def pair(backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    async with replicas(backend) as both:
        yield both


async def test_read_op_moves_the_marker_settles_notifications_and_tells_every_device(
        pair: tuple[AppServer, AppServer]) -> None:
    one, two = pair
    async with one.client() as client:
        u = await people(client, "alice", "bob")
        alice = u["alice"]
        assert (await client.post("/api/rooms/general/join", headers=alice["headers"])).status_code == 200
        offsets = [await say(client, u["bob"], "room:general", {"text": f"@alice look {n}"}) for n in range(3)]
        assert await until(lambda: unread_notes(client, alice), 3) == 3
        assert await room_unread(client, alice, "room:general") == 3

        phone = await WsClient.connect(one.base_url, token_of(alice))
        laptop = await WsClient.connect(two.base_url, token_of(alice))
        try:
            for device in (phone, laptop):
                assert (await device.request("subscribe", channel=f"user:{alice['id']}"))["ok"]
            reply = await phone.request("read", channel="room:general", offset=offsets[1])
            assert reply == {"id": reply["id"], "ok": True, "channel": "room:general", "offset": offsets[1],
                             "channel_unread": 1, "unread": 1}
            for device in (phone, laptop):  # the other replica's device hears it too
                assert await personal(device, "read") == {"type": "read", "channel": "room:general",
                                                          "offset": offsets[1], "channel_unread": 1, "unread": 1}
            assert await unread_notes(client, alice) == 1 and await room_unread(client, alice, "room:general") == 1

            back = await laptop.request("read", channel="room:general", offset=1)
            assert back["offset"] == offsets[1] and back["unread"] == 1, "a marker never moves back"
            past = await laptop.request("read", channel="room:general", offset=10**9)
            assert past["offset"] == offsets[2] and past["channel_unread"] == 0 and past["unread"] == 0
            assert (await personal(phone, "read"))["unread"] == 0
            notes = (await client.get("/api/notifications", headers=alice["headers"])).json()["notifications"]
            assert [n["read"] for n in notes] == [True, True, True]
        finally:
            await phone.close()
            await laptop.close()


async def test_read_op_refuses_what_the_user_cannot_read(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob", "carol")
        created = await client.post("/api/rooms", json={"name": "secret", "private": True}, headers=u["bob"]["headers"])
        assert created.status_code == 201
        dm = (await client.post("/api/dms", json={"username": "carol"}, headers=u["bob"]["headers"])).json()["channel"]
        await say(client, u["bob"], dm, {"text": "just us"})
    ws = await WsClient.connect(app_server.base_url, token_of(u["alice"]))
    try:
        for channel in ("room:secret", dm):
            refused = await ws.request("read", channel=channel, offset=1)
            assert refused["error"]["code"] == "forbidden", channel
        assert (await ws.request("read", channel="bot:echo", offset=1))["error"]["code"] == "invalid_channel"
        for offset in (-1, "7", 1.5, None, True):
            bad = await ws.request("read", channel="room:general", offset=offset)
            assert bad["error"]["code"] == "invalid_frame", offset
        ok = await ws.request("read", channel="room:general", offset=0)
        assert ok["ok"] is True, "the connection is unaffected by the refusals"
    finally:
        await ws.close()
    async with app_server.client() as client:
        refused_rest = await client.post(f"/api/channels/{dm}/read", json={"offset": 1}, headers=u["alice"]["headers"])
        assert refused_rest.status_code == 404 and refused_rest.json()["error"]["code"] == "not_a_member"
        bad_rest = await client.post(f"/api/channels/{dm}/read", json={"offset": "x"}, headers=u["carol"]["headers"])
        assert bad_rest.status_code == 422
        rest = await client.post(f"/api/channels/{dm}/read", json={"offset": 5}, headers=u["carol"]["headers"])
        assert rest.status_code == 200
        assert rest.json() == {"channel": dm, "offset": 1, "channel_unread": 0, "unread": 0}
        await assert_conforms(client, rest, "POST", "/api/channels/{channel}/read")


async def test_reading_a_public_room_without_joining_settles_its_mentions(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        offset = await say(client, u["bob"], "room:general", {"text": "hey @alice"})
        assert await until(lambda: unread_notes(client, u["alice"]), 1) == 1
        response = await client.post("/api/channels/room:general/read", json={"offset": offset},
                                     headers=u["alice"]["headers"])
        assert response.json() == {"channel": "room:general", "offset": offset, "channel_unread": 0, "unread": 0}


async def test_a_notification_for_a_message_already_read_is_stored_read(app_server: AppServer) -> None:
    """The notification is written after the commit; a reader who saw the message live may have
    moved the marker first. The badge must not rise for it, and nothing is pushed to the device."""
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        dm = (await client.post("/api/dms", json={"username": "alice"}, headers=u["bob"]["headers"])).json()["channel"]
        offset = await say(client, u["bob"], dm, {"text": "seen live"})
        assert await until(lambda: unread_notes(client, u["alice"]), 1) == 1
        read = await client.post(f"/api/channels/{dm}/read", json={"offset": offset}, headers=u["alice"]["headers"])
        assert read.json()["unread"] == 0
        resources = app_server.resources
        row = await resources.hooks.channels.meta(dm)
        late = await resources.notifications.notify(u["alice"]["id"], "dm", MessageStored(
            dm, row.id, "dm", offset, u["bob"]["id"], "bob", "user", {"text": "seen live"}))
        assert late["read"] is True
        assert await unread_notes(client, u["alice"]) == 0
        newer = await say(client, u["bob"], dm, {"text": "not seen yet"})
        assert await until(lambda: unread_notes(client, u["alice"]), 1) == 1, "an unread message still notifies"
        notes = (await client.get("/api/notifications", headers=u["alice"]["headers"])).json()["notifications"]
        assert notes[0]["offset"] == newer and notes[0]["read"] is False
