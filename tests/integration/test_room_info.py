"""Issue 14: one room's page (show, members, topic) and the DM list's last message, both backends.

A private room the caller is not in must answer exactly like an unknown room (no existence leak);
a topic edit is the room moderators' (cached channel metadata forgets the old topic at once).
"""

from __future__ import annotations

from datetime import datetime

import httpx

from server.db.tables import channel_members
from tests.support.appserver import AppServer
from tests.support.community import people, say

ROOM_KEYS = {"channel", "kind", "title", "topic", "member", "role", "last_offset", "unread", "slow_mode"}


async def _create(client: httpx.AsyncClient, who: dict, name: str, *, private: bool = False,
                  topic: str | None = None) -> None:
    response = await client.post("/api/rooms", json={"name": name, "private": private, "topic": topic},
                                 headers=who["headers"])
    assert response.status_code == 201, response.text


async def test_room_show_members_and_topic(app_server: AppServer) -> None:
    async with app_server.client() as client:
        crew = await people(client, "Owner_Olive", "Mod_Max", "Member_Mia", "Stranger_Sid")
        owner, mod, member, stranger = (crew[n] for n in ("Owner_Olive", "Mod_Max", "Member_Mia", "Stranger_Sid"))
        await _create(client, owner, "builders", topic="Redstone only")

        # Anyone signed in sees a public room, member or not.
        shown = await client.get("/api/rooms/builders", headers=stranger["headers"])
        assert shown.status_code == 200
        room = shown.json()
        assert set(room) == ROOM_KEYS
        assert room == {"channel": "room:builders", "kind": "room", "title": "builders", "topic": "Redstone only",
                        "member": False, "role": None, "last_offset": 0, "unread": 0, "slow_mode": 0}

        assert (await client.post("/api/rooms/builders/join", headers=member["headers"])).status_code == 200
        assert (await client.post("/api/rooms/builders/join", headers=mod["headers"])).status_code == 200
        # No API promotes a moderator yet: the test does it in the database (room pages read roles uncached).
        room_id = (await app_server.resources.hooks.channels.by_name("room:builders")).id
        await app_server.resources.db.execute("test.promote", channel_members.update().where(
            channel_members.c.channel_id == room_id, channel_members.c.user_id == mod["id"]).values(role="moderator"))

        await say(client, owner, "room:builders", {"text": "first"})
        await say(client, owner, "room:builders", {"text": "second"})
        mine = (await client.get("/api/rooms/builders", headers=member["headers"])).json()
        assert mine["member"] is True and mine["role"] == "member"
        assert mine["last_offset"] == 2 and mine["unread"] == 2
        listed = (await client.get("/api/rooms", headers=member["headers"])).json()["rooms"]
        assert next(r for r in listed if r["channel"] == "room:builders") == mine  # same shape as the list

        members = await client.get("/api/rooms/builders/members", headers=stranger["headers"])
        assert members.status_code == 200
        assert members.json() == {"members": [
            {"id": owner["id"], "username": "Owner_Olive", "role": "owner"},
            {"id": mod["id"], "username": "Mod_Max", "role": "moderator"},
            {"id": member["id"], "username": "Member_Mia", "role": "member"},
        ]}

        # Topic: owner and moderators only; the answer is the room as GET shows it.
        plain = await client.patch("/api/rooms/builders", json={"topic": "mine now"}, headers=member["headers"])
        assert plain.status_code == 403 and plain.json()["error"]["code"] == "not_room_moderator"
        outsider = await client.patch("/api/rooms/builders", json={"topic": "x"}, headers=stranger["headers"])
        assert outsider.status_code == 403
        edited = await client.patch("/api/rooms/builders", json={"topic": "  Pistons and hoppers  "},
                                    headers=mod["headers"])
        assert edited.status_code == 200, edited.text
        assert edited.json()["topic"] == "Pistons and hoppers" and edited.json()["role"] == "moderator"
        assert set(edited.json()) == ROOM_KEYS
        # Every reader sees the new topic at once (the cached metadata was invalidated).
        assert (await client.get("/api/rooms/builders", headers=stranger["headers"])).json()["topic"] == \
            "Pistons and hoppers"
        meta = await app_server.resources.hooks.channels.meta("room:builders")
        assert meta.topic == "Pistons and hoppers"

        too_long = await client.patch("/api/rooms/builders", json={"topic": "x" * 501}, headers=owner["headers"])
        assert too_long.status_code == 422
        assert too_long.json()["error"]["details"][0]["field"] == "topic"
        cleared = await client.patch("/api/rooms/builders", json={"topic": None}, headers=owner["headers"])
        assert cleared.status_code == 200 and cleared.json()["topic"] is None
        assert (await client.patch("/api/rooms/builders", json={"topic": "a" * 500},
                                   headers=owner["headers"])).status_code == 200


async def test_unknown_and_foreign_private_rooms_are_the_same_404(app_server: AppServer) -> None:
    async with app_server.client() as client:
        crew = await people(client, "Secret_Sam", "Guest_Gus", "Nosy_Ned")
        sam, gus, ned = crew["Secret_Sam"], crew["Guest_Gus"], crew["Nosy_Ned"]
        await _create(client, sam, "hideout", private=True, topic="shh")

        answers = []
        for path, method, body in (("/api/rooms/{}", "GET", None), ("/api/rooms/{}/members", "GET", None),
                                   ("/api/rooms/{}", "PATCH", {"topic": "mine"})):
            for name in ("hideout", "doesnotexist"):
                response = await client.request(method, path.format(name), json=body, headers=ned["headers"])
                assert response.status_code == 404, (path, name, response.text)
                error = response.json()["error"]
                answers.append((error["code"], error["message"]))
        assert set(answers) == {("room_not_found", "No such room.")}

        # Once invited, the room is there for the guest, members list included.
        invited = await client.post("/api/rooms/hideout/invite", json={"username": "Guest_Gus"},
                                    headers=sam["headers"])
        assert invited.status_code == 200
        shown = await client.get("/api/rooms/hideout", headers=gus["headers"])
        assert shown.status_code == 200
        assert shown.json()["kind"] == "private_room" and shown.json()["member"] is True
        names = [m["username"] for m in (await client.get("/api/rooms/hideout/members",
                                                          headers=gus["headers"])).json()["members"]]
        assert names == ["Secret_Sam", "Guest_Gus"]
        assert (await client.patch("/api/rooms/hideout", json={"topic": "x"},
                                   headers=gus["headers"])).status_code == 403
        # Leaving makes it disappear again.
        assert (await client.post("/api/rooms/hideout/leave", headers=gus["headers"])).status_code == 204
        assert (await client.get("/api/rooms/hideout", headers=gus["headers"])).status_code == 404


async def test_dm_list_carries_the_last_message(app_server: AppServer) -> None:
    async with app_server.client() as client:
        crew = await people(client, "Dm_Dora", "Dm_Eli", "Dm_Fay")
        dora, eli, fay = crew["Dm_Dora"], crew["Dm_Eli"], crew["Dm_Fay"]
        with_eli = (await client.post("/api/dms", json={"username": "Dm_Eli"}, headers=dora["headers"])).json()
        with_fay = (await client.post("/api/dms", json={"username": "Dm_Fay"}, headers=dora["headers"])).json()

        empty = (await client.get("/api/dms", headers=dora["headers"])).json()["dms"]
        assert {d["channel"]: d["last_message"] for d in empty} == {with_eli["channel"]: None,
                                                                   with_fay["channel"]: None}

        await say(client, dora, with_eli["channel"], {"text": "hi Eli"})
        await say(client, eli, with_eli["channel"], {"text": "hello Dora, long time"})
        await say(client, dora, with_fay["channel"], {"text": "are you online?"})

        dms = (await client.get("/api/dms", headers=dora["headers"])).json()["dms"]
        # Most recent conversation first (Fay's, although Eli's has more messages).
        assert [d["channel"] for d in dms] == [with_fay["channel"], with_eli["channel"]]
        by_channel = {d["channel"]: d for d in dms}
        last = by_channel[with_eli["channel"]]["last_message"]
        assert last["text"] == "hello Dora, long time"
        assert last["from"] == {"id": eli["id"], "username": "Dm_Eli"}
        assert datetime.fromisoformat(last["ts"]).tzinfo is not None
        assert by_channel[with_eli["channel"]]["unread"] == 2 and by_channel[with_eli["channel"]]["last_offset"] == 2
        assert by_channel[with_fay["channel"]]["last_message"]["from"]["username"] == "Dm_Dora"

        seen_by_eli = (await client.get("/api/dms", headers=eli["headers"])).json()["dms"]
        assert [d["last_message"]["text"] for d in seen_by_eli] == ["hello Dora, long time"]
        assert seen_by_eli[0]["user"] == {"id": dora["id"], "username": "Dm_Dora"}
        assert (await client.get("/api/dms", headers=fay["headers"])).json()["dms"][0]["last_message"]["text"] == \
            "are you online?"
