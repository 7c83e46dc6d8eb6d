"""Contract: drive a real server through every op and check every frame it sends against the
schemas of tests/contract/schemas.py (STYLE habit 13), plus the close codes and the REST fallback.

Every websocket frame received is recorded below the test client (a tap on the connection), split
on `\\n` and validated, so a frame nobody asserts on is still checked. The test ends by requiring
that every frame kind in the schemas was seen at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest

from realtime import errors
from tests.conftest import fresh_sqlite_url, make_settings
from tests.contract import schemas
from tests.support.accounts import bearer, login, register
from tests.support.appserver import AppServer
from tests.support.wsclient import WsClient

CLOSES = {d.code: d for d in errors.ALL_DISCONNECTS}


class Recorder:
    """Every frame sent and received on every tapped connection, and how each connection closed."""

    def __init__(self) -> None:
        self.received: list[tuple[int, str]] = []  # (connection number, frame)
        self.op_of: dict[int, dict[int, str]] = {}  # connection number -> request id -> op
        self.closes: list[tuple[int | None, str | None]] = []


class Tap:
    """Stands in for a websockets connection under WsClient: records what passes through it."""

    def __init__(self, connection: Any, recorder: Recorder) -> None:
        self._connection = connection
        self._recorder = recorder
        self._number = len(recorder.op_of)
        self._ops = recorder.op_of[self._number] = {}

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        async for frame in self._connection:
            self._recorder.received.append((self._number, frame if isinstance(frame, str) else frame.decode()))
            yield frame

    async def send(self, data: str | bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
            sent = orjson.loads(data)
            self._ops[sent["id"]] = sent["op"]
        await self._connection.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


async def connect(recorder: Recorder, server: AppServer, token: str | None = None, **kwargs: Any) -> WsClient:
    plain = await WsClient.connect(server.base_url, token, **kwargs)
    plain._reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await plain._reader
    return WsClient(Tap(plain.connection, recorder))  # type: ignore[arg-type]


async def closed_with(recorder: Recorder, client: WsClient, timeout: float = 5.0) -> int | None:
    code = await client.close_code(timeout)
    recorder.closes.append((code, client.connection.close_reason))
    return code


def validate(kind: str, frame: dict[str, Any]) -> None:
    assert kind in schemas.FRAMES, f"a frame of an undocumented kind {kind!r}: {frame}"
    jsonschema.validate(frame, schemas.FRAMES[kind], cls=jsonschema.Draft202012Validator)


def test_schemas_are_valid_json_schema() -> None:
    for schema in [*schemas.FRAMES.values(), *schemas.REST.values()]:
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.fixture
async def server(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), WS_MAX_SUBSCRIPTIONS=4,
                             WS_MAX_CONNECTIONS_PER_USER=2, WS_AUTH_TIMEOUT=0.5, WS_PUBLISH_RATE=2,
                             WS_PUBLISH_BURST=5)
    async with AppServer(settings) as app_server:
        yield app_server


async def users(server: AppServer, *names: str) -> dict[str, dict[str, Any]]:
    out = {}
    async with server.client() as http:
        for name in names:
            user = await register(http, name)
            out[name] = {**(await login(http, name.lower())), "id": user["id"]}
    return out


async def test_every_server_frame_matches_its_schema(server: AppServer) -> None:
    rec = Recorder()
    people = await users(server, "Ann", "Ben", "Cal")
    ann_token, ben_token, cal_token = (people[n]["access_token"] for n in ("Ann", "Ben", "Cal"))

    # Authentication: an auth frame, a bad one (4001), none at all (4002), a foreign Origin (4004).
    silent = await connect(rec, server)
    ann = await connect(rec, server)
    assert (await ann.request("subscribe", channel="room:general"))["error"]["code"] == "not_authenticated"
    assert (await ann.request("auth", token=ann_token))["user"]["username"] == "Ann"
    assert (await ann.request("auth", token=ann_token))["error"]["code"] == "already_authenticated"
    bad = await connect(rec, server)
    assert (await bad.request("auth", token="not-a-real-token"))["error"]["code"] == "invalid_token"
    assert await closed_with(rec, bad) == 4001
    assert await closed_with(rec, silent) == 4002
    foreign = await connect(rec, server, ann_token, origin="https://evil.example")
    assert await closed_with(rec, foreign) == 4004

    # Every op, with the pushes it causes.
    ben = await connect(rec, server, ben_token)  # Bearer on the upgrade
    assert (await ann.request("ping"))["pong"] is True
    first = await ann.request("subscribe", channel="room:general")
    await ben.request("subscribe", channel="room:general")
    await ann.push_about("join", "Ben")
    assert (await ben.request("typing", channel="room:general"))["ok"]
    await ann.push_about("typing", "Ben")
    again = await ben.request("typing", channel="room:general")
    assert again["error"]["code"] == "rate_limited" and again["error"]["retry_after"] > 0
    published = await ann.request("publish", channel="room:general", data={"text": "hi"}, nonce="contract-1")
    assert (await ann.request("publish", channel="room:general", data={"text": "hi"},
                              nonce="contract-1"))["offset"] == published["offset"]
    await ann.push("message")
    await ben.push("message")
    assert (await ann.request("history", channel="room:general", limit=10))["messages"]
    assert {u["username"] for u in (await ann.request("presence", channel="room:general"))["users"]} == {"Ann", "Ben"}
    assert (await ben.request("unsubscribe", channel="room:general"))["ok"]
    await ann.push_about("leave", "Ben")
    recovered = await ben.request("subscribe", channel="room:general",
                                  since={"offset": first["offset"], "epoch": first["epoch"]})
    assert recovered["recovered"] is True and recovered["missed"]
    await ben.request("unsubscribe", channel="room:general")
    lost = await ben.request("subscribe", channel="room:general", since={"offset": 0, "epoch": "other-epoch"})
    assert lost["recovered"] is False
    async with server.client() as http:
        fresh = await http.post("/api/auth/refresh", json={"refresh_token": people["Ann"]["refresh_token"]})
    assert (await ann.request("refresh", token=fresh.json()["access_token"]))["expires_at"] > 0

    # Notifications: the server publishes on the user's personal channel.
    ann_id = people["Ann"]["id"]
    await ann.request("subscribe", channel=f"user:{ann_id}")
    assert (await ben.request("publish", channel="room:general", data={"text": "hey @Ann"}))["ok"]

    async def personal() -> dict[str, Any]:
        while True:  # skip room messages (Ann is in room:general too)
            push = await ann.push("message")
            if push["channel"] == f"user:{ann_id}":
                return push

    note = await personal()
    assert note["data"]["type"] == "notification" and note["data"]["notification"]["kind"] == "mention"
    async with server.client() as http:
        read = await http.post("/api/notifications/read", json={"all": True}, headers=bearer(ann_token))
    assert read.status_code == 200, read.text
    assert (await personal())["data"]["type"] == "notifications_read"
    async with server.client() as http:  # a member has a marker to move (and every device hears it)
        assert (await http.post("/api/rooms/general/join", headers=bearer(ann_token))).status_code == 200
    marker = await ann.request("read", channel="room:general", offset=published["offset"])
    assert marker["ok"] and marker["offset"] == published["offset"]
    assert (await personal())["data"]["type"] == "read"

    # Message events: each change is a message push of its own (data per EVENT_DATA), then history
    # shows the changed message with its state fields.
    target = published["offset"]
    events = []

    async def amend(op: str, **fields: Any) -> dict[str, Any]:
        while (reply := await ann.request(op, channel="room:general", offset=target, **fields)).get(
                "error", {}).get("code") == "rate_limited":  # edits and reactions share the publish rate
            await asyncio.sleep(reply["error"]["retry_after"])
        return reply

    for op, fields in (("edit", {"data": {"text": "hi, edited"}}), ("react", {"emoji": "👍"}),
                       ("react", {"emoji": "🎉"}), ("unreact", {"emoji": "🎉"})):
        reply = await amend(op, **fields)
        assert reply["ok"] and reply["offset"] > target, reply
        while (push := await ann.push("message"))["channel"] != "room:general":
            pass
        events.append(push)
    page = await ann.request("history", channel="room:general", limit=50)
    changed = next(m for m in page["messages"] if m["offset"] == target)
    if "rev" in changed:  # read from the database (the hot window keeps frames as first sent)
        assert changed["reactions"] == [{"emoji": "👍", "count": 1, "users": [ann_id]}]
    async with server.client() as http:
        rest_page = await http.get("/api/channels/room:general/messages", headers=bearer(ann_token))
    stored = next(m for m in rest_page.json()["messages"] if m["offset"] == target)
    assert stored["data"]["text"] == "hi, edited" and stored["rev"] == events[-1]["offset"] and stored["edited_at"]
    jsonschema.validate(stored, schemas.MESSAGE, cls=jsonschema.Draft202012Validator)
    assert (await amend("delete"))["ok"]
    while (push := await ann.push("message"))["channel"] != "room:general":
        pass
    events.append(push)
    for event in events:
        jsonschema.validate(event["data"], schemas.EVENT_DATA, cls=jsonschema.Draft202012Validator)
    assert [e["data"]["type"] for e in events] == ["edit", "reaction", "reaction", "reaction", "delete"]
    missing = await amend("react", emoji="👍")
    assert missing["error"]["code"] == "message_not_found"
    await asyncio.sleep(1.0)  # the publish rate refills before the error cases below publish again

    # Personal channel events: a profile edit, a friendship, a friend coming online (Cal, below).
    async with server.client() as http:
        assert (await http.patch("/api/users/me", json={"bio": "contract"}, headers=bearer(ann_token))).is_success
        assert (await http.post("/api/friends", json={"username": "Cal"}, headers=bearer(ann_token))).is_success
        assert (await http.post("/api/friends/Ann/accept", headers=bearer(cal_token))).is_success
    kinds = set()
    while kinds != {"profile", "relationship"}:
        kinds.add((await personal())["data"]["type"])

    # Moderation: Ann owns a room; Ben (subscribed) is kicked (a `removed` push), then muted and
    # unmuted (`sanction`, `sanction_lifted` on his own channel).
    ben_id = people["Ben"]["id"]
    await ben.request("subscribe", channel=f"user:{ben_id}")
    async with server.client() as http:
        assert (await http.post("/api/rooms", json={"name": "contract"}, headers=bearer(ann_token))).is_success
        assert (await http.post("/api/rooms/contract/join", headers=bearer(ben_token))).is_success
        assert (await ben.request("subscribe", channel="room:contract"))["ok"]
        kicked = await http.post("/api/rooms/contract/kick", json={"username": "Ben", "reason": "contract"},
                                 headers=bearer(ann_token))
        assert kicked.status_code == 204
        assert (await ben.push("removed"))["reason"] == "kicked"
        muted = await http.post("/api/moderation/sanctions", headers=bearer(ann_token), json={
            "kind": "mute", "username": "Ben", "channel": "room:contract", "minutes": 1, "reason": "contract"})
        assert muted.status_code == 201, muted.text
        lifted = await http.delete(f"/api/moderation/sanctions/{muted.json()['id']}", headers=bearer(ann_token))
        assert lifted.status_code == 204
    seen_types = set()
    while seen_types != {"sanction", "sanction_lifted"}:
        push = await ben.push("message")
        if push["channel"] == f"user:{ben_id}":
            seen_types.add(push["data"]["type"])

    # Reply errors.
    assert (await ann.request("dance"))["error"]["code"] == "unknown_op"
    assert (await ann.request("subscribe"))["error"]["code"] == "invalid_frame"
    assert (await ann.request("subscribe", channel="nowhere"))["error"]["code"] == "invalid_channel"
    assert (await ann.request("subscribe", channel="room:general"))["error"]["code"] == "already_subscribed"
    assert (await ann.request("unsubscribe", channel="bot:none"))["error"]["code"] == "not_subscribed"
    assert (await ann.request("subscribe", channel="user:999999"))["error"]["code"] == "forbidden"
    assert (await ann.request("publish", channel="bot:news", data={}))["error"]["code"] == "forbidden"
    invalid = await ann.request("publish", channel="room:general", data={"text": ""})
    assert invalid["error"]["code"] == "invalid_data" and invalid["error"]["details"][0]["field"] == "data.text"
    await ann.request("subscribe", channel="bot:a")
    await ann.request("subscribe", channel="bot:b")
    assert (await ann.request("subscribe", channel="bot:c"))["error"]["code"] == "too_many_subscriptions"
    await ann.send_raw("{not json")
    await ann.send_raw('{"op": "ping"}')
    for _ in range(100):
        if len(ann.unmatched) >= 2:
            break
        await asyncio.sleep(0.02)
    assert [u["error"]["code"] for u in ann.unmatched] == ["invalid_json", "invalid_frame"]

    # Closes: too many connections for a user (4006), a frame over 64 KiB (4009), a flood (4102).
    cal_1 = await connect(rec, server, cal_token)
    cal_2 = await connect(rec, server, cal_token)
    cal_3 = await connect(rec, server, cal_token)
    assert await closed_with(rec, cal_3) == 4006
    while (await personal())["data"]["type"] != "friend_presence":  # Cal, Ann's friend, came online
        pass
    await cal_1.send_raw("x" * (65 * 1024))
    assert await closed_with(rec, cal_1) == 4009
    for n in range(200):
        try:
            reply = await cal_2.request("publish", channel="room:general", data={"text": f"flood {n}"}, timeout=2)
        except (TimeoutError, ConnectionError):
            break
        assert reply["ok"] or reply["error"]["code"] == "rate_limited"
    assert await closed_with(rec, cal_2) == 4102

    # REST fallback: the same semantics, HTTP shapes.
    async with server.client() as http:
        rest: dict[str, httpx.Response] = {
            "publish": await http.post("/api/channels/room:general/messages", json={"data": {"text": "rest"}},
                                       headers=bearer(ben_token)),
            "history": await http.get("/api/channels/room:general/messages", params={"since": 0},
                                      headers=bearer(ben_token)),
            "presence": await http.get("/api/channels/room:general/presence", headers=bearer(ben_token)),
            "error": await http.post("/api/channels/user:1/messages", json={"data": {}}, headers=bearer(ben_token)),
        }
    assert [r.status_code for r in rest.values()] == [201, 200, 200, 403]
    for name, response in rest.items():
        jsonschema.validate(response.json(), schemas.REST[name], cls=jsonschema.Draft202012Validator)
    await ann.push("message")  # the REST publish reached the websocket subscriber

    # A server stop closes the rest with 1012 (reconnect now).
    await server.stop()
    assert await closed_with(rec, ann) == 1012
    await closed_with(rec, ben)

    seen: set[str] = set()
    codes: set[str] = set()
    for number, raw in rec.received:
        for line in raw.split("\n"):
            frame = orjson.loads(line)
            kind = schemas.classify(frame, rec.op_of[number])
            validate(kind, frame)
            seen.add(kind)
            if kind == "error":
                codes.add(frame["error"]["code"])
    assert seen == set(schemas.FRAMES), f"never exercised: {set(schemas.FRAMES) - seen}"
    untriggerable = {errors.UNAVAILABLE, errors.INTERNAL}  # server faults: no client can cause them
    assert codes == schemas.reply_error_codes() - untriggerable
    for code, reason in rec.closes:
        assert code in CLOSES, f"undocumented close code {code}"
        # uvicorn's own shutdown closes with 1012 and no reason (the SIGTERM drain sends the reason)
        assert reason == CLOSES[code].reason or (code == 1012 and reason == "")
    assert {code for code, _ in rec.closes} == {4001, 4002, 4004, 4006, 4009, 4102, 1012}
