"""Properties of `realtime.protocol.parse`, the one gate every client frame passes (hypothesis).

Whatever the bytes — arbitrary JSON, wrong types in any field of any op, lone surrogates, NUL, RTL
overrides, huge integers, deep nesting, invalid UTF-8 — `parse` returns a Command that satisfies
the documented rules or raises `FrameError` with a documented code, and nothing else. Frames the
AsyncAPI document (docs/asyncapi.yaml) calls valid are accepted with their fields intact, and
everything accepted can be encoded back by the server's own frame builders.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from realtime import errors, protocol
from tests.contract.schemas import reply_error_codes

PARSE_CODES = {errors.INVALID_JSON, errors.INVALID_FRAME, errors.UNKNOWN_OP, errors.INVALID_CHANNEL}
ASYNCAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text())
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that break naive handling: NUL, controls, bidi overrides, BOM, line/paragraph separators,
# lone surrogates (only reachable in a Python str or a JSON \u escape: UTF-8 cannot carry them).
NASTY = ["\x00", "\x1b", "\u202e", "\u202d", "\u2066", "\u200f", "\ufeff", "\u2028", "\u2029", "\ud800", "\udfff",
         "\U0001F44D", "\u0301", "\n", "\\", '"', "\uffff"]
nasty_text = st.lists(st.one_of(st.sampled_from(NASTY), st.characters()), max_size=20).map("".join)
# The same without surrogates: JSON cannot carry those to a field check (the frame is invalid_json).
odd_text = st.lists(st.one_of(st.sampled_from([c for c in NASTY if not "\ud800" <= c <= "\udfff"]),
                              st.characters(exclude_categories=["Cs"])), max_size=20).map("".join)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=15)


def deref(node: Any) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = ASYNCAPI
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            return deref(target)
        return {key: deref(value) for key, value in node.items()}
    if isinstance(node, list):
        return [deref(value) for value in node]
    return node


REQUEST_SCHEMAS = {name.removesuffix("Request"): deref(message["payload"])
                   for name, message in ASYNCAPI["components"]["messages"].items() if name.endswith("Request")}


def outcome(raw: str | bytes) -> protocol.Command | protocol.FrameError:
    """parse's answer; any exception but FrameError fails the property (pytest shows it)."""
    try:
        return protocol.parse(raw)
    except protocol.FrameError as exc:
        return exc


def check_command(command: protocol.Command) -> None:
    """The rules docs/protocol.md promises about every frame parse lets through."""
    assert type(command.id) is int and 0 <= command.id < 2**53
    assert command.op in protocol.OPS
    if command.op in protocol.NEEDS_CHANNEL and command.channels is None:
        assert isinstance(command.channel, str) and len(command.channel) <= protocol.MAX_CHANNEL_LENGTH
        assert protocol.CHANNEL_PATTERN.fullmatch(command.channel), repr(command.channel)
    for target in command.channels or ():
        assert protocol.CHANNEL_PATTERN.fullmatch(target.channel)
    if command.channels is not None:
        assert 1 <= len(command.channels) <= protocol.MAX_BATCH
        assert len({t.channel for t in command.channels}) == len(command.channels)
    if command.nonce is not None:
        assert protocol.NONCE_PATTERN.fullmatch(command.nonce), repr(command.nonce)
    if command.limit is not None:
        assert type(command.limit) is int and 1 <= command.limit <= 1000
    if command.op in ("auth", "refresh"):
        assert isinstance(command.token, str) and 10 <= len(command.token) <= 4096
    if command.op == "read":
        assert type(command.offset) is int and 0 <= command.offset <= protocol.MAX_OFFSET
    if command.op in protocol.AMEND_OPS:
        assert type(command.offset) is int and 1 <= command.offset <= protocol.MAX_OFFSET
    if command.op in ("react", "unreact"):
        assert isinstance(command.emoji, str) and 1 <= len(command.emoji) <= protocol.MAX_EMOJI_CHARS
    if command.since is not None:
        assert type(command.since.offset) is int and command.since.offset >= 0
    if command.op in ("publish", "edit"):
        # The server must be able to encode what it accepted, wrapped as deep as it ever wraps it:
        # a push inside a recovered batch subscribe reply.
        push = orjson.loads(protocol.message_push("bot:x", 1, "e", command.data, None, 0.0))
        protocol.reply(command.id, results=[{"ok": True, "missed": [push]}])


def check(raw: str | bytes) -> protocol.Command | protocol.FrameError:
    result = outcome(raw)
    if isinstance(result, protocol.FrameError):
        assert result.code in PARSE_CODES and result.code in reply_error_codes(), result.code
        assert result.message
        assert result.request_id is None or (type(result.request_id) is int and 0 <= result.request_id < 2**53)
        protocol.error_reply(result.request_id, result.code, result.message)  # encodable
    else:
        check_command(result)
    return result


# --- anything at all ------------------------------------------------------------------------------

@PROPERTY
@given(st.binary(max_size=400))
@example(b"\xff\xfe{}")
@example(b'{"id":1,"op":"ping","x":"\xed\xa0\x80"}')  # a UTF-8-encoded surrogate: not UTF-8
@example(b"\x00")
def test_any_bytes(raw: bytes) -> None:
    check(raw)


@PROPERTY
@given(nasty_text)
@example('{"id":1,"op":"ping","x":"\ud800"}')
@example('{"id":1,"op":"ping"}\x00')
def test_any_text(raw: str) -> None:
    check(raw)


@PROPERTY
@given(json_values)
def test_any_json_value(value: Any) -> None:
    check(_dumps(value))


def _dumps(value: Any) -> bytes:
    """JSON text for any value hypothesis made, big integers included (orjson refuses > 64 bits);
    a lone surrogate goes out as raw (invalid) UTF-8, as a hostile client would send it."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


ops = st.one_of(st.sampled_from(sorted(protocol.OPS)), nasty_text)
any_field = st.one_of(json_values, nasty_text, st.integers(min_value=-(2**200), max_value=2**200))


@PROPERTY
@given(st.fixed_dictionaries({"id": st.one_of(st.integers(min_value=-3, max_value=2**64), any_field), "op": ops},
                             optional={key: any_field for key in ("channel", "channels", "data", "nonce", "since",
                                                                  "limit", "token", "offset", "presence", "emoji")}))
def test_any_frame_shaped_object(frame: dict[str, Any]) -> None:
    check(_dumps(frame))


@PROPERTY
@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["[", '{"a":']), st.sampled_from(sorted(protocol.OPS)))
@example(65, "[", "publish")
@example(300, "[", "publish")
@example(1100, "[", "publish")
def test_deep_nesting(depth: int, opener: str, op: str) -> None:
    data = opener * depth + "1" + ("]" if opener == "[" else "}") * depth
    frame = f'{{"id":5,"op":"{op}","channel":"bot:deep","data":{data},"token":"0123456789","offset":1,"emoji":"x"}}'
    result = check(frame)
    if op in ("publish", "edit") and depth > protocol.MAX_DATA_DEPTH:
        assert isinstance(result, protocol.FrameError) and result.code in (errors.INVALID_FRAME, errors.INVALID_JSON)


@PROPERTY
@given(st.sampled_from(["id", "limit", "offset", "since"]),
       st.one_of(st.integers(min_value=-(2**300), max_value=2**300), st.floats(allow_nan=False),
                 st.sampled_from(["1e400", "-1e400", "1" * 5000, "-0", "1.0", "1e2", "0x10", "NaN", "Infinity"])))
def test_huge_and_odd_numbers(field: str, number: Any) -> None:
    text = number if isinstance(number, str) else repr(number) if isinstance(number, float) else str(number)
    assume(not (isinstance(number, float) and math.isinf(number)))
    templates = {"id": '{"op":"ping","id":%s}', "limit": '{"id":3,"op":"history","channel":"room:a","limit":%s}',
                 "offset": '{"id":3,"op":"read","channel":"room:a","offset":%s}',
                 "since": '{"id":3,"op":"history","channel":"room:a","since":{"offset":%s,"epoch":"e"}}'}
    result = check(templates[field] % text)
    if field == "id" and isinstance(result, protocol.Command):
        assert result.id == int(text)


# --- valid frames, as the AsyncAPI document describes them -------------------------------------

channels = st.from_regex(protocol.CHANNEL_PATTERN, fullmatch=True).filter(
    lambda c: len(c) <= protocol.MAX_CHANNEL_LENGTH)
nonces = st.from_regex(protocol.NONCE_PATTERN, fullmatch=True)
since = st.fixed_dictionaries({"offset": st.integers(min_value=0, max_value=2**62), "epoch": st.text(max_size=64)})
tokens = st.text(min_size=10, max_size=300)
emoji = st.text(min_size=1, max_size=protocol.MAX_EMOJI_CHARS)
message_offset = st.integers(min_value=1, max_value=protocol.MAX_OFFSET)
request_id = st.integers(min_value=0, max_value=2**53 - 1)
bounded_data = st.recursive(json_scalars.filter(lambda v: not isinstance(v, int) or abs(v) < 2**63),
                            lambda children: st.lists(children, max_size=3)
                            | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=10)
batch_item = st.one_of(channels, st.fixed_dictionaries({"channel": channels}, optional={"since": since | st.none()}))


def _name(item: Any) -> str:
    return item if isinstance(item, str) else item["channel"]


VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "auth": st.fixed_dictionaries({"token": tokens}),
    "refresh": st.fixed_dictionaries({"token": tokens}),
    "ping": st.just({}),
    "unsubscribe": st.fixed_dictionaries({"channel": channels}),
    "presence": st.fixed_dictionaries({"channel": channels}),
    "typing": st.fixed_dictionaries({"channel": channels}),
    "publish": st.fixed_dictionaries({"channel": channels, "data": bounded_data}, optional={"nonce": nonces}),
    "history": st.fixed_dictionaries({"channel": channels}, optional={
        "since": since | st.none(), "limit": st.integers(min_value=1, max_value=1000)}),
    "read": st.fixed_dictionaries({"channel": channels,
                                   "offset": st.integers(min_value=0, max_value=protocol.MAX_OFFSET)}),
    "edit": st.fixed_dictionaries({"channel": channels, "offset": message_offset,
                                   "data": st.fixed_dictionaries({"text": st.text()})}),
    "delete": st.fixed_dictionaries({"channel": channels, "offset": message_offset}),
    "react": st.fixed_dictionaries({"channel": channels, "offset": message_offset, "emoji": emoji}),
    "unreact": st.fixed_dictionaries({"channel": channels, "offset": message_offset, "emoji": emoji}),
    "subscribe": st.one_of(
        st.fixed_dictionaries({"channel": channels}, optional={"since": since | st.none(), "presence": st.booleans()}),
        st.fixed_dictionaries({"channels": st.lists(batch_item, min_size=1, max_size=protocol.MAX_BATCH,
                                                    unique_by=_name)}, optional={"presence": st.booleans()})),
}
assert set(VALID) == protocol.OPS, "a new op needs a strategy of valid frames here"


@st.composite
def valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(protocol.OPS)))
    return {"id": draw(request_id), "op": op, **draw(VALID[op])}


@PROPERTY
@given(valid_frames())
def test_documented_frames_are_accepted_as_sent(frame: dict[str, Any]) -> None:
    jsonschema.validate(frame, REQUEST_SCHEMAS[frame["op"]], cls=jsonschema.Draft7Validator)
    command = check(orjson.dumps(frame))
    assert isinstance(command, protocol.Command), command
    assert (command.id, command.op) == (frame["id"], frame["op"])
    for key in ("channel", "nonce", "limit", "token", "offset", "emoji", "presence"):
        if key in frame and not (key == "channel" and frame["op"] == "ping"):
            assert getattr(command, key) == frame[key], key
    if "data" in frame:
        assert command.data == frame["data"]
    if frame.get("since") is not None:
        assert (command.since.offset, command.since.epoch) == (frame["since"]["offset"], frame["since"]["epoch"])
    if "channels" in frame:
        assert [t.channel for t in command.channels or ()] == [_name(i) for i in frame["channels"]]


# --- the wrong type (or value) in each field of each op ---------------------------------------

WRONG: dict[str, st.SearchStrategy[Any]] = {
    "channel": st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                         odd_text.filter(lambda t: not protocol.CHANNEL_PATTERN.fullmatch(t)),
                         channels.map(lambda c: c + "\n"), st.text(min_size=161).map(lambda t: "room:" + "a" * 160)),
    "token": st.one_of(st.integers(), st.none(), st.lists(st.integers(), max_size=2), st.text(max_size=9),
                       st.just("x" * 4097)),
    "data": st.integers(min_value=protocol.MAX_DATA_DEPTH + 1, max_value=1000).map(lambda d: _nest(d)),
    "nonce": st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2), st.just(""),
                       st.just("x" * 65), nonces.map(lambda n: n + "\n"), odd_text.filter(
                           lambda t: not protocol.NONCE_PATTERN.fullmatch(t))),
    "since": st.one_of(st.integers(), st.text(), st.booleans(), st.lists(st.integers(), max_size=2),
                       st.fixed_dictionaries({"offset": st.one_of(st.integers(max_value=-1), st.text(), finite,
                                                                  st.booleans()), "epoch": st.text(max_size=5)}),
                       st.fixed_dictionaries({"offset": st.integers(min_value=0),
                                              "epoch": st.one_of(st.integers(), st.none(), st.text(min_size=65))})),
    "limit": st.one_of(st.integers(max_value=0), st.integers(min_value=1001), st.booleans(), st.text(), finite,
                       st.lists(st.integers(), max_size=2)),
    "offset": st.one_of(st.integers(max_value=-1), st.integers(min_value=protocol.MAX_OFFSET + 1), st.booleans(),
                        st.text(), finite, st.none(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)),
    "emoji": st.one_of(st.integers(), st.none(), st.just(""), st.text(min_size=protocol.MAX_EMOJI_CHARS + 1),
                       st.lists(st.text(max_size=2), max_size=2)),
    "presence": st.one_of(st.integers(), st.text(), st.lists(st.booleans(), max_size=2)),
    "channels": st.one_of(st.just([]), st.integers(), st.text(), st.dictionaries(st.text(max_size=2), st.integers()),
                          st.lists(channels, min_size=protocol.MAX_BATCH + 1, max_size=protocol.MAX_BATCH + 1,
                                   unique=True),
                          channels.map(lambda c: [c, c]), st.just([{"channel": "room:a", "extra": 1}]),
                          st.just([["room:a"]]), st.just([None])),
}


def _nest(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@st.composite
def broken_frames(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    frame = draw(valid_frames())
    fields = [key for key in frame if key in WRONG and not (key == "data" and frame["op"] not in ("publish", "edit"))]
    if frame["op"] == "subscribe":
        fields.append("presence")
    assume(fields)
    field = draw(st.sampled_from(sorted(fields)))
    frame[field] = draw(WRONG[field])
    return frame, field


@PROPERTY
@given(broken_frames())
def test_a_wrong_field_is_refused_with_its_code_and_the_request_id(case: tuple[dict[str, Any], str]) -> None:
    frame, field = case
    result = check(_dumps(frame))
    assert isinstance(result, protocol.FrameError), f"{field}={frame[field]!r} accepted"
    expected = {errors.INVALID_FRAME} | ({errors.INVALID_CHANNEL} if field in ("channel", "channels") else set())
    assert result.code in expected, (field, result.code)
    assert result.request_id == frame["id"], "the reply must name the request"
    # The AsyncAPI document calls it invalid too, except where JSON Schema cannot say it (the document
    # says it in prose): the depth of `data`; `1.0` for an integer (JSON Schema's `integer` takes it,
    # the server wants JSON integers); a trailing newline after an anchored pattern, which ECMA-262's
    # `$` refuses but Python's `re` (used by the jsonschema package) lets through.
    value = frame[field]
    inexpressible = (field == "data" or (isinstance(value, float) and value.is_integer())
                     or (isinstance(value, str) and value.endswith("\n"))
                     or (isinstance(value, dict) and isinstance(value.get("offset"), float)))
    if not inexpressible:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(frame, REQUEST_SCHEMAS[frame["op"]], cls=jsonschema.Draft7Validator)


@PROPERTY
@given(valid_frames(), st.one_of(st.text(max_size=5), finite, st.booleans(), st.none(), st.lists(
    st.integers(), max_size=2), st.integers(max_value=-1), st.integers(min_value=2**53, max_value=2**70)))
def test_a_bad_id_is_refused_without_one(frame: dict[str, Any], bad_id: Any) -> None:
    frame["id"] = bad_id
    result = check(_dumps(frame))
    assert isinstance(result, protocol.FrameError) and result.code == errors.INVALID_FRAME
    assert result.request_id is None


@PROPERTY
@given(valid_frames(), st.one_of(odd_text, st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2)))
def test_an_unknown_or_mistyped_op(frame: dict[str, Any], op: Any) -> None:
    assume(not isinstance(op, str) or op not in protocol.OPS)
    frame["op"] = op
    result = check(_dumps(frame))
    assert isinstance(result, protocol.FrameError)
    assert result.code == (errors.UNKNOWN_OP if isinstance(op, str) else errors.INVALID_FRAME)
    assert result.request_id == frame["id"]
