"""Input the server accepts equals what the client sends: one chat message schema on the websocket
and REST, on both backends; refusals name the field and lose nothing else."""

from __future__ import annotations

from typing import Any

from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.wsclient import WsClient

URL = "/api/channels/room:general/messages"


async def test_rest_publish_refuses_bad_data_with_the_field(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice")
        headers = u["alice"]["headers"]
        first = await say(client, u["alice"], "room:general", {"text": "  the first message \n"})
        cases: list[tuple[Any, str, str]] = [
            ({"text": "x" * 20009}, "data.text", "too_long"),
            ({"text": ""}, "data.text", "empty"),
            ({"text": 42, "reply_to": "abc"}, "data.text", "invalid_type"),
            ({"text": "hi", "reply_to": first + 5}, "data.reply_to", "unknown_message"),
            ({"text": "ding\x07"}, "data.text", "control_character"),
            ({"text": "hi", "colour": "red"}, "data.colour", "unknown_field"),
            ("hello", "data", "invalid_type"),
        ]
        for data, field, code in cases:
            response = await client.post(URL, json={"data": data}, headers=headers)
            assert response.status_code == 422, (data, response.text)
            error = response.json()["error"]
            assert error["code"] == "validation_failed"
            assert [(d["field"], d["code"]) for d in error["details"]] == [(field, code)], data
        page = (await client.get(f"{URL}?limit=50", headers=headers)).json()
        stored = [m["data"] for m in page["messages"]]
        assert stored == [{"text": "the first message"}], "stored trimmed; no refusal stored"
        reply = await client.post(URL, json={"data": {"text": "ok", "reply_to": first}}, headers=headers)
        assert reply.status_code == 201 and reply.json()["offset"] == first + 1, "offsets have no holes"


async def test_websocket_publish_refuses_bad_data_and_the_connection_lives_on(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "alice", "bob")
        token_a = u["alice"]["headers"]["Authorization"].split()[1]
        token_b = u["bob"]["headers"]["Authorization"].split()[1]
    alice = await WsClient.connect(app_server.base_url, token_a)
    bob = await WsClient.connect(app_server.base_url, token_b)
    try:
        assert (await bob.request("subscribe", channel="room:general"))["ok"]
        refused = await alice.request("publish", channel="room:general", data={"text": "y" * 4001})
        assert refused["ok"] is False
        assert refused["error"]["code"] == "invalid_data" and refused["error"]["temporary"] is False
        assert refused["error"]["details"] == [{"field": "data.text", "code": "too_long",
                                               "message": "at most 4,000 characters (4,001 sent)"}]
        blank = await alice.request("publish", channel="room:general", data={"text": "   "})
        assert blank["error"]["details"][0]["code"] == "empty"
        ok = await alice.request("publish", channel="room:general", data={"text": " fine ", "cid": "c1"})
        assert ok["ok"] is True and ok["offset"] == 1
        [message] = await bob.messages(1)
        assert message["data"] == {"text": "fine", "cid": "c1"}
        assert bob.pushes.empty(), "the refused messages reached nobody"
    finally:
        await alice.close()
        await bob.close()
