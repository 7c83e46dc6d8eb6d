"""The chat message schema (server/services/chat_data.py): what is stored, what is refused and why."""

from __future__ import annotations

import pytest

from realtime.errors import ReplyError
from server.services.chat_data import MAX_TEXT, validate_chat_data


async def last_offset_10() -> int:
    return 10


async def never_read() -> int:
    raise AssertionError("the last offset is read only for replies")


async def refused(data: object) -> dict[str, str]:
    with pytest.raises(ReplyError) as caught:
        await validate_chat_data(data, last_offset_10)
    assert caught.value.code == "invalid_data"
    [detail] = caught.value.details
    assert detail["field"] in caught.value.message
    return detail


async def test_valid_messages_are_stored_trimmed() -> None:
    assert await validate_chat_data({"text": "  hi\n"}, never_read) == {"text": "hi"}
    assert await validate_chat_data({"text": "a\tb\r\nc", "cid": "c0ffee"}, never_read) == {
        "text": "a\tb\nc", "cid": "c0ffee"}
    assert await validate_chat_data({"text": "x" * MAX_TEXT}, never_read) == {"text": "x" * MAX_TEXT}
    assert await validate_chat_data({"text": "🙂" * MAX_TEXT}, never_read) == {"text": "🙂" * MAX_TEXT}
    assert await validate_chat_data({"text": "re", "reply_to": 10}, last_offset_10) == {"text": "re", "reply_to": 10}
    assert await validate_chat_data({"text": "re", "reply_to": None}, never_read) == {"text": "re"}


@pytest.mark.parametrize(("data", "field", "code"), [
    ({"text": ""}, "data.text", "empty"),
    ({"text": " \n\t "}, "data.text", "empty"),
    ({}, "data.text", "invalid_type"),
    ({"text": 42, "reply_to": "abc"}, "data.text", "invalid_type"),
    ({"text": "x" * 20009}, "data.text", "too_long"),
    ({"text": "bell\x07"}, "data.text", "control_character"),
    ({"text": "nul\x00here"}, "data.text", "control_character"),
    ({"text": "c1\x85end"}, "data.text", "control_character"),
    ({"text": "hi", "reply_to": "abc"}, "data.reply_to", "invalid_type"),
    ({"text": "hi", "reply_to": True}, "data.reply_to", "invalid_type"),
    ({"text": "hi", "reply_to": 0}, "data.reply_to", "invalid_type"),
    ({"text": "hi", "reply_to": 11}, "data.reply_to", "unknown_message"),
    ({"text": "hi", "html": "<b>"}, "data.html", "unknown_field"),
    ({"text": "hi", "cid": "no spaces"}, "data.cid", "invalid"),
    ({"text": "hi", "cid": "c0ffee\n"}, "data.cid", "invalid"),  # `$` matched before a final newline
    ("just a string", "data", "invalid_type"),
    ([{"text": "hi"}], "data", "invalid_type"),
])
async def test_bad_data_is_refused_with_the_field(data: object, field: str, code: str) -> None:
    detail = await refused(data)
    assert (detail["field"], detail["code"]) == (field, code)
    assert detail["message"]


async def test_bridges_relay_for_someone_elsewhere_and_members_cannot() -> None:
    relayed = {"text": "hi from the nether", "via": {"source": "game", "name": "  Steve  "}}
    assert await validate_chat_data(relayed, never_read, relaying=True) == {
        "text": "hi from the nether", "via": {"source": "game", "name": "Steve"}}
    joined = {"text": "Steve joined the game", "system": "join",
              "via": {"source": "discord", "name": "Alex", "avatar": "https://cdn.example/a.png"}}
    assert await validate_chat_data(joined, never_read, relaying=True) == joined
    assert (await refused(relayed))["code"] == "bots_only"  # a member cannot speak for Steve


@pytest.mark.parametrize(("data", "field", "code"), [
    ({"text": "x", "via": "Steve"}, "data.via", "invalid_type"),
    ({"text": "x", "via": {"source": "irc", "name": "S"}}, "data.via.source", "invalid"),
    ({"text": "x", "via": {"source": "game", "name": " "}}, "data.via.name", "empty"),
    ({"text": "x", "via": {"source": "game", "name": "S" * 33}}, "data.via.name", "too_long"),
    ({"text": "x", "via": {"source": "game", "name": "S\x00"}}, "data.via.name", "control_character"),
    ({"text": "x", "via": {"source": "game", "name": "S", "avatar": "http://a/b.png"}}, "data.via.avatar", "invalid"),
    ({"text": "x", "via": {"source": "game", "name": "S", "avatar": "javascript:x"}}, "data.via.avatar", "invalid"),
    ({"text": "x", "via": {"source": "game", "name": "S", "colour": "red"}}, "data.via.colour", "unknown_field"),
    ({"text": "x", "system": "join"}, "data.system", "needs_via"),
    ({"text": "x", "system": "explode", "via": {"source": "game", "name": "S"}}, "data.system", "invalid"),
])
async def test_bad_relays_are_refused_by_field(data: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(ReplyError) as caught:
        await validate_chat_data(data, last_offset_10, relaying=True)
    [detail] = caught.value.details
    assert (detail["field"], detail["code"]) == (field, code)
