"""Write docs/asyncapi.yaml, the AsyncAPI 3.0 description of wire protocol v1, from the protocol's
own definitions, so the document cannot drift from the code (tests/contract/test_asyncapi.py
fails when the committed file differs from what this script writes).

Sources, never restated here:
- server frames (replies, the error reply, pushes): the JSON Schemas of tests/contract/schemas.py,
  which tests/contract/test_frames.py checks against every frame a real server sends;
- client frames: built below from the limits and patterns of realtime/protocol.py (`parse` accepts
  every frame these schemas accept: tests/unit/test_protocol_properties.py);
- error codes and close codes: realtime/errors.py, with their prose (when, what to do) taken from
  the tables of docs/protocol.md (tests/contract/test_protocol_doc.py keeps those complete).

Usage: `python scripts/asyncapi.py` (rewrite) or `python scripts/asyncapi.py --check` (exit 1
when the committed file is stale).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402  (test dependency: pyyaml)

from realtime import errors, protocol  # noqa: E402
from tests.contract import schemas  # noqa: E402

OUT = ROOT / "docs" / "asyncapi.yaml"
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
CHANNEL_KEY = "ws"
Schema = dict[str, Any]

# --- client frames ------------------------------------------------------------------------------
# Closed schemas: what a conforming client sends. (The server ignores unknown fields, so it is
# more lenient than this; anything these schemas accept, `protocol.parse` accepts.)

MAX_ID = 2**53 - 1
REQUEST_ID: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID,
                      "description": "Chosen by the client (a counter per connection); the reply carries it back."}
CHANNEL_NAME: Schema = {"type": "string", "pattern": protocol.CHANNEL_PATTERN.pattern,
                        "maxLength": protocol.MAX_CHANNEL_LENGTH}
SINCE: Schema = {"type": "object", "required": ["offset", "epoch"], "additionalProperties": False,
                 "description": "The position of the last message processed on the channel.",
                 "properties": {"offset": {"type": "integer", "minimum": 0},
                                "epoch": {"type": "string", "maxLength": 64}}}
NULLABLE_SINCE: Schema = {"anyOf": [{"$ref": "#/components/schemas/Since"}, {"type": "null"}]}
NONCE: Schema = {"type": "string", "pattern": protocol.NONCE_PATTERN.pattern,
                 "description": "Idempotency key, unique per author for 24 h (docs/protocol.md, nonces)."}
TOKEN: Schema = {"type": "string", "minLength": 10, "maxLength": 4096,
                 "description": "A user access token (JWT) or a bot token (`vxb_...`)."}
MESSAGE_OFFSET: Schema = {"type": "integer", "minimum": 1, "maximum": protocol.MAX_OFFSET}
CHAT_DATA: Schema = {"description": "On `room:` and `dm:` channels a chat message {text, reply_to?, cid?} "
                     f"(at most {protocol.MAX_DATA_DEPTH} levels deep) "
                     "(docs/protocol.md, chat messages; refused with `invalid_data`); on `bot:` channels "
                     "any JSON value."}
EDIT_DATA: Schema = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}},
                     "description": "The new text, with the chat message rules (refused with `invalid_data`)."}
EMOJI: Schema = {"type": "string", "minLength": 1, "maxLength": protocol.MAX_EMOJI_CHARS,
                 "description": "One emoji grapheme (anything else: `invalid_data`)."}
BATCH_TARGET: Schema = {"anyOf": [
    {"$ref": "#/components/schemas/ChannelName"},
    {"type": "object", "required": ["channel"], "additionalProperties": False,
     "properties": {"channel": {"$ref": "#/components/schemas/ChannelName"}, "since": NULLABLE_SINCE}}]}

CHANNEL_REF: Schema = {"$ref": "#/components/schemas/ChannelName"}
CHANNEL_PUSHES = ("message", "presence_diff", "typing", "removed")  # the rest ride on `user:<id>`
# op -> (required fields, optional fields); `id` and `op` are added to each.
REQUEST_FIELDS: dict[str, tuple[dict[str, Schema], dict[str, Schema]]] = {
    "auth": ({"token": TOKEN}, {}),
    "refresh": ({"token": TOKEN}, {}),
    "ping": ({}, {}),
    "unsubscribe": ({"channel": CHANNEL_REF}, {}),
    "publish": ({"channel": CHANNEL_REF, "data": CHAT_DATA}, {"nonce": {"$ref": "#/components/schemas/Nonce"}}),
    "history": ({"channel": CHANNEL_REF}, {"since": NULLABLE_SINCE,
                                           "limit": {"type": "integer", "minimum": 1, "maximum": 1000}}),
    "presence": ({"channel": CHANNEL_REF}, {}),
    "typing": ({"channel": CHANNEL_REF}, {}),
    "read": ({"channel": CHANNEL_REF, "offset": {"type": "integer", "minimum": 0, "maximum": protocol.MAX_OFFSET}},
             {}),
    "edit": ({"channel": CHANNEL_REF, "offset": MESSAGE_OFFSET, "data": EDIT_DATA}, {}),
    "delete": ({"channel": CHANNEL_REF, "offset": MESSAGE_OFFSET}, {}),
    "react": ({"channel": CHANNEL_REF, "offset": MESSAGE_OFFSET, "emoji": EMOJI}, {}),
    "unreact": ({"channel": CHANNEL_REF, "offset": MESSAGE_OFFSET, "emoji": EMOJI}, {}),
}


def _request(op: str, required: dict[str, Schema], optional: dict[str, Schema]) -> Schema:
    base = {"id": {"$ref": "#/components/schemas/RequestId"}, "op": {"const": op}}
    return {"type": "object", "required": ["id", "op", *sorted(required)], "additionalProperties": False,
            "properties": {**base, **required, **optional}}


def request_schemas() -> dict[str, Schema]:
    """The payload schema of every client op's frame."""
    out = {op: _request(op, *fields) for op, fields in REQUEST_FIELDS.items()}
    presence = {"type": "boolean", "description": "Receive presence_diff pushes (default: true for users, "
                "false for bots)."}
    single = _request("subscribe", {"channel": CHANNEL_REF}, {"since": NULLABLE_SINCE, "presence": presence})
    single["title"] = "one channel"
    batch = _request("subscribe", {"channels": {
        "type": "array", "minItems": 1, "maxItems": protocol.MAX_BATCH, "uniqueItems": True, "items": BATCH_TARGET,
        "description": "Each channel at most once; one bad item refuses the whole frame."}}, {"presence": presence})
    batch["title"] = "batch"
    out["subscribe"] = {"oneOf": [single, batch]}
    missing = protocol.OPS ^ set(out)
    assert not missing, f"client ops without a request schema in scripts/asyncapi.py: {sorted(missing)}"
    return dict(sorted(out.items()))


REQUEST_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "auth": [{"id": 1, "op": "auth", "token": "eyJhbGciOiJIUzI1NiJ9.e30.signature"}],
    "subscribe": [{"id": 2, "op": "subscribe", "channel": "room:general", "since": {"offset": 41, "epoch": "db1"}},
                  {"id": 7, "op": "subscribe", "channels": [
                      "room:general", {"channel": "room:minecraft", "since": {"offset": 41, "epoch": "db3"}}]}],
    "unsubscribe": [{"id": 3, "op": "unsubscribe", "channel": "room:general"}],
    "publish": [{"id": 4, "op": "publish", "channel": "room:general", "data": {"text": "hello"}, "nonce": "m-1c9e"}],
    "history": [{"id": 5, "op": "history", "channel": "room:general", "limit": 2}],
    "presence": [{"id": 6, "op": "presence", "channel": "room:general"}],
    "typing": [{"id": 7, "op": "typing", "channel": "room:general"}],
    "refresh": [{"id": 8, "op": "refresh", "token": "eyJhbGciOiJIUzI1NiJ9.e30.newsignature"}],
    "ping": [{"id": 9, "op": "ping"}],
    "read": [{"id": 10, "op": "read", "channel": "room:general", "offset": 45}],
    "edit": [{"id": 11, "op": "edit", "channel": "room:general", "offset": 45, "data": {"text": "hello, world"}}],
    "delete": [{"id": 12, "op": "delete", "channel": "room:general", "offset": 45}],
    "react": [{"id": 13, "op": "react", "channel": "room:general", "offset": 45, "emoji": "\U0001F44D"}],
    "unreact": [{"id": 14, "op": "unreact", "channel": "room:general", "offset": 45, "emoji": "\U0001F44D"}],
}

# --- server frames: tests/contract/schemas.py, with its named sub-schemas as components ---------

# The sub-schemas worth a name of their own (objects and the formats clients reuse).
_NAMED = ("USER", "RANK", "CHANNEL", "EPOCH", "PERSONAL", "MESSAGE", "REACTION_SUMMARY", "EVENT_DATA",
          "NOTIFICATION_ITEM", "PERSON", "ERROR_OBJECT", "BATCH_ITEM")


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _named_components() -> dict[int, str]:
    named = {id(getattr(schemas, name)): _pascal(name) for name in _NAMED}
    named[id(schemas.CHANNEL)] = "ChannelName"
    return named


def _factor(schema: Any, named: dict[int, str], top: bool = False) -> Any:
    """A copy of `schema` in which the named sub-schemas of schemas.py are `$ref`s."""
    if not top and id(schema) in named:
        return {"$ref": f"#/components/schemas/{named[id(schema)]}"}
    if isinstance(schema, dict):
        return {key: _factor(value, named) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_factor(value, named) for value in schema]
    return schema


# --- prose from docs/protocol.md ----------------------------------------------------------------

def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if match is None:
        raise SystemExit(f"docs/protocol.md has no '## {title}' section")
    return match.group(1)


def _table(text: str, title: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in _section(text, title).splitlines() if line.startswith("|") and not set(line) <= set("|- ")]
    return rows[1:]


def _op_description(text: str, op: str) -> str:
    """The first paragraph after the example of the op's section."""
    match = re.search(rf"^### `{op}`\n.*?```\n\n(.*?)(?:\n\n|\n#)", _section(text, "Ops"), re.S | re.M)
    return " ".join(match.group(1).split()) if match else ""


# --- the document -------------------------------------------------------------------------------

def _message(name: str, title: str, payload: Schema, summary: str = "", examples: list[Any] | None = None) -> Schema:
    message: Schema = {"name": name, "title": title}
    if summary:
        message["summary"] = summary
    message["contentType"] = "application/json"
    message["payload"] = payload
    if examples:
        message["examples"] = [{"payload": example} for example in examples]
    return message


def close_codes(doc_text: str) -> list[dict[str, Any]]:
    rows = {int(row[0]): row for row in _table(doc_text, "Close codes")}
    out = []
    for disconnect in errors.ALL_DISCONNECTS:
        if disconnect.code not in rows:
            raise SystemExit(f"close code {disconnect.code} is missing from docs/protocol.md")
        _code, _reason, advice, when = rows[disconnect.code]
        out.append({"code": disconnect.code, "reason": disconnect.reason, "reconnect": disconnect.reconnect,
                    "advice": advice, "when": when})
    return out


def error_codes(doc_text: str) -> list[dict[str, Any]]:
    rows = {row[0].strip("`"): row for row in _table(doc_text, "Reply error codes")}
    out = []
    for code in sorted(schemas.reply_error_codes()):
        if code not in rows:
            raise SystemExit(f"reply error code {code!r} is missing from docs/protocol.md")
        _code, temporary, meaning, action = rows[code]
        out.append({"code": code, "temporary": temporary, "meaning": meaning, "action": action})
    return out


def build() -> dict[str, Any]:
    """The AsyncAPI document, as a plain dict (deterministic: same code, same document)."""
    doc_text = PROTOCOL_DOC.read_text()
    named = _named_components()
    channel_ref = f"#/channels/{CHANNEL_KEY}"
    component_schemas: dict[str, Any] = {
        "RequestId": REQUEST_ID, "ChannelName": CHANNEL_NAME, "Since": SINCE, "Nonce": NONCE}
    for name in _NAMED:
        key = named[id(getattr(schemas, name))]
        component_schemas.setdefault(key, _factor(getattr(schemas, name), named, top=True))

    messages: dict[str, Schema] = {}
    operations: dict[str, Schema] = {}
    requests = request_schemas()
    error_ref = {"$ref": f"{channel_ref}/messages/errorReply"}
    for op, payload in requests.items():
        description = _op_description(doc_text, op)
        messages[f"{op}Request"] = _message(f"{op}Request", f"`{op}` request", payload,
                                            f"Client frame of the `{op}` op.", REQUEST_EXAMPLES[op])
        messages[f"{op}Reply"] = _message(f"{op}Reply", f"`{op}` reply",
                                          _factor(schemas.REPLIES[op], named, top=True),
                                          f"The answer to a `{op}` request (same `id`).")
        operation: Schema = {"action": "send", "channel": {"$ref": channel_ref}, "title": f"`{op}`",
                             "summary": f"Send the `{op}` op."}
        if description:
            operation["description"] = description
        operation["messages"] = [{"$ref": f"{channel_ref}/messages/{op}Request"}]
        operation["reply"] = {"channel": {"$ref": channel_ref},
                              "messages": [{"$ref": f"{channel_ref}/messages/{op}Reply"}, error_ref]}
        operations[f"send_{op}"] = operation

    codes = error_codes(doc_text)
    error_payload = _factor(schemas.ERROR, named, top=True)
    messages["errorReply"] = _message(
        "errorReply", "Error reply", error_payload,
        "A refused request (`id` null when the frame had no usable id). `error.code` is one of `x-error-codes`.")
    messages["errorReply"]["x-error-codes"] = codes

    for push, schema in schemas.PUSHES.items():
        name = f"{push}Push"
        if push in CHANNEL_PUSHES:
            summary = f"A `{push}` push (no `id`) on a subscribed channel."
        else:
            summary = f"A `message` push on your `user:<id>` channel whose `data.type` is `{push}` (`from`: null)."
        messages[name] = _message(name, f"`{push}` push", _factor(schema, named, top=True), summary)
        operations[f"receive_{push}"] = {"action": "receive", "channel": {"$ref": channel_ref},
                                         "title": f"`{push}` push",
                                         "messages": [{"$ref": f"{channel_ref}/messages/{name}"}]}

    closes = close_codes(doc_text)
    messages["close"] = _message(
        "close", "Close frame",
        {"type": "object", "required": ["code", "reason"], "additionalProperties": False,
         "description": "Not JSON: the websocket close frame's status code and reason text. Go by the code.",
         "properties": {"code": {"enum": [c["code"] for c in closes]},
                        "reason": {"enum": [c["reason"] for c in closes]}}},
        "The server ends the connection with one of `x-close-codes`; 4000-4099: do not reconnect, "
        "4100-4199: reconnect with backoff, 1012: reconnect now.")
    messages["close"]["x-close-codes"] = closes
    operations["receive_close"] = {"action": "receive", "channel": {"$ref": channel_ref}, "title": "close",
                                   "messages": [{"$ref": f"{channel_ref}/messages/close"}]}
    operations["receive_error"] = {
        "action": "receive", "channel": {"$ref": channel_ref}, "title": "unsolicited error",
        "summary": "An error reply with `id: null` (bad token on the upgrade, over the connection cap, a frame "
                   "over the size limit), usually followed by a close.",
        "messages": [error_ref]}

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Vonix realtime protocol",
            "version": "1",
            "description": (
                "Wire protocol v1 of Vonix's websocket (`GET /ws`). Prose, recovery rules and rate limits: "
                "docs/protocol.md. Generated by scripts/asyncapi.py from realtime/protocol.py, "
                "realtime/errors.py and tests/contract/schemas.py; do not edit by hand.\n\n"
                "A client frame is one JSON object (at most "
                f"{protocol.MAX_FRAME_BYTES // 1024} KiB of UTF-8) with an integer `id` and an `op`. A server "
                "frame is one or more JSON objects separated by `\\n`: replies (`id`, `ok`), error replies "
                "(`ok: false`) and pushes (`op`, no `id`). Match replies by `id`, never by position; ignore "
                "unknown fields and unknown push ops. Integers are JSON integers: `1.0` or `1e2` is refused "
                "(`invalid_frame`) where an integer is expected."),
        },
        "defaultContentType": "application/json",
        "servers": {
            "vonix": {
                "host": "{host}", "protocol": "wss", "title": "A Vonix server (ws:// without TLS)",
                "variables": {"host": {"default": "localhost:8000", "description": "host[:port] of the server"}},
                "security": [{"$ref": "#/components/securitySchemes/bearer"},
                             {"$ref": "#/components/securitySchemes/cookie"}],
            },
        },
        "channels": {
            CHANNEL_KEY: {
                "address": "/ws",
                "title": "The websocket",
                "description": (
                    "One connection carries every channel (`room:`, `dm:`, `user:`, `bot:`, `live:`, `status:`). "
                    "Authenticate with the `Authorization: Bearer` header or the session cookie on the upgrade, "
                    f"or with an `auth` frame within WS_AUTH_TIMEOUT (else close {errors.AUTH_TIMEOUT.code}). "
                    "Until then every op but `auth`, `ping` and following `status:` channels answers "
                    "`not_authenticated`. No subprotocol, no per-message deflate; a binary frame is read as "
                    "UTF-8 JSON too."),
                "servers": [{"$ref": "#/servers/vonix"}],
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {"ws": {"method": "GET", "bindingVersion": "0.1.0"}},
            },
        },
        "operations": operations,
        "components": {
            "schemas": component_schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or vxb_ bot token",
                           "description": "On the upgrade request (bots and API clients). Or send the token in "
                                          "a first `auth` frame."},
                "cookie": {"type": "httpApiKey", "name": "vonix_access", "in": "cookie",
                           "description": "The PWA's session cookie; the Origin must be allowed (else close "
                                          f"{errors.FORBIDDEN_ORIGIN.code})."},
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no anchors: every schema spelled out where it is used


def render() -> str:
    header = "# Generated by scripts/asyncapi.py from realtime/ and tests/contract/schemas.py: do not edit.\n"
    return header + yaml.dump(build(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/asyncapi.yaml is stale: run python scripts/asyncapi.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
