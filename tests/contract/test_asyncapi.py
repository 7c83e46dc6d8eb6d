"""docs/asyncapi.yaml (AsyncAPI 3.0) cannot drift from the protocol's own definitions.

Three layers:
- the committed file is exactly what scripts/asyncapi.py generates from realtime/ and
  tests/contract/schemas.py (regenerate: `python scripts/asyncapi.py`);
- read back from the file alone, it lists every op of `realtime.protocol.OPS` (request, reply and
  error reply), every push of the frame schemas, every reply error code and every close code of
  `realtime.errors` with its reason and advice; its reply and push payloads are the very schemas
  test_frames.py checks real server frames against; its examples are frames `parse` accepts;
- it is a structurally valid AsyncAPI 3.0 document. No PyPI package ships the official AsyncAPI 3
  JSON Schema (the @asyncapi/specs npm package does), so ASYNCAPI_SUBSET below is the part of
  that schema this document uses, with the spec's MUSTs we rely on (operation messages are the
  channel's, every `$ref` resolves, payloads are JSON Schema draft-07). The file was also checked
  once against the official schemas/3.0.0.json (0 errors).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from realtime import errors, protocol
from tests.contract import schemas

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "asyncapi.yaml"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("vonix_asyncapi_script", ROOT / "scripts" / "asyncapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(DOC_PATH.read_text())


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def deref(document: dict[str, Any], node: Any) -> Any:
    """`node` with every local `$ref` replaced by its target (the schemas have no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return deref(document, resolve(document, node["$ref"]))
        return {key: deref(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [deref(document, value) for value in node]
    return node


def message(document: dict[str, Any], ref_holder: dict[str, Any]) -> dict[str, Any]:
    """A message object from a `$ref` to a channel message (which itself refers to a component)."""
    found = resolve(document, ref_holder["$ref"])
    return resolve(document, found["$ref"]) if "$ref" in found else found


# --- 1. generated, never hand-edited -----------------------------------------------------------

def test_the_committed_document_is_the_generated_one() -> None:
    assert DOC_PATH.read_text() == GENERATOR.render(), (
        "docs/asyncapi.yaml is stale: run `python scripts/asyncapi.py` and commit the result")


# --- 2. the document follows realtime/ ----------------------------------------------------------

def operations(document: dict[str, Any], action: str) -> dict[str, dict[str, Any]]:
    return {name: op for name, op in document["operations"].items() if op["action"] == action}


def request_op(payload: dict[str, Any]) -> str:
    """The `op` constant of a request payload (`subscribe` has two shapes: one channel, a batch)."""
    shapes = payload.get("oneOf", [payload])
    ops = {shape["properties"]["op"]["const"] for shape in shapes}
    assert len(ops) == 1, ops
    return ops.pop()


def check_against_protocol(document: dict[str, Any]) -> None:
    """Every op, reply, push, error code and close code of the code base is in the document, and
    nothing else. Reads the document only (a stale or hand-edited file fails here too)."""
    sent = operations(document, "send")
    documented_ops = {request_op(message(document, op["messages"][0])["payload"]) for op in sent.values()}
    assert documented_ops == set(protocol.OPS), f"ops: documented {sorted(documented_ops)}, code {sorted(protocol.OPS)}"
    for name, op in sent.items():
        replies = [message(document, ref)["name"] for ref in op["reply"]["messages"]]
        assert replies == [f"{name.removeprefix('send_')}Reply", "errorReply"], f"{name} replies {replies}"
        reply_payload = deref(document, message(document, op["reply"]["messages"][0])["payload"])
        assert reply_payload == schemas.REPLIES[name.removeprefix("send_")], f"{name}: reply schema drifted"

    pushes = {name.removeprefix("receive_"): op for name, op in operations(document, "receive").items()
              if name not in ("receive_close", "receive_error")}
    assert set(pushes) == set(schemas.PUSHES), f"pushes: documented {sorted(pushes)}, code {sorted(schemas.PUSHES)}"
    for push, op in pushes.items():
        assert deref(document, message(document, op["messages"][0])["payload"]) == schemas.PUSHES[push], (
            f"push {push}: schema drifted")

    error = document["components"]["messages"]["errorReply"]
    assert deref(document, error["payload"]) == schemas.ERROR
    codes = {row["code"]: row for row in error["x-error-codes"]}
    assert set(codes) == schemas.reply_error_codes(), "reply error codes differ from realtime/errors.py"
    assert set(deref(document, error["payload"])["properties"]["error"]["properties"]["code"]["enum"]) == set(codes)

    close = document["components"]["messages"]["close"]
    closes = {row["code"]: row for row in close["x-close-codes"]}
    assert set(closes) == {d.code for d in errors.ALL_DISCONNECTS}, "close codes differ from realtime/errors.py"
    for disconnect in errors.ALL_DISCONNECTS:
        row = closes[disconnect.code]
        assert (row["reason"], row["reconnect"]) == (disconnect.reason, disconnect.reconnect), disconnect
    assert set(close["payload"]["properties"]["code"]["enum"]) == set(closes)
    assert set(close["payload"]["properties"]["reason"]["enum"]) == {d.reason for d in errors.ALL_DISCONNECTS}


def test_every_op_push_error_and_close_code_is_documented(doc: dict[str, Any]) -> None:
    check_against_protocol(doc)


@pytest.mark.parametrize("change", ["new op", "new push", "new error code", "new close code", "renamed reason"])
def test_the_drift_check_fails_when_realtime_grows(doc: dict[str, Any], change: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is not vacuous: each kind of protocol addition without the document makes it fail."""
    if change == "new op":
        monkeypatch.setattr(protocol, "OPS", protocol.OPS | {"shout"})
    elif change == "new push":
        monkeypatch.setitem(schemas.PUSHES, "wave", {"type": "object"})
    elif change == "new error code":
        monkeypatch.setattr(errors, "TOO_LOUD", "too_loud", raising=False)
    elif change == "new close code":
        monkeypatch.setattr(errors, "ALL_DISCONNECTS",
                            (*errors.ALL_DISCONNECTS, errors.Disconnect(4105, "too loud", True)))
    else:
        renamed = errors.Disconnect(errors.SLOW_CONSUMER.code, "reads too slowly", True)
        monkeypatch.setattr(errors, "ALL_DISCONNECTS",
                            tuple(renamed if d is errors.SLOW_CONSUMER else d for d in errors.ALL_DISCONNECTS))
    with pytest.raises(AssertionError):
        check_against_protocol(doc)
    if change == "new op":
        with pytest.raises(AssertionError, match="shout"):
            GENERATOR.request_schemas()  # and the generator refuses to write a document without it


def test_request_schemas_follow_the_parser_limits(doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    assert components["ChannelName"] == {"type": "string", "pattern": protocol.CHANNEL_PATTERN.pattern,
                                         "maxLength": protocol.MAX_CHANNEL_LENGTH}
    assert components["Nonce"]["pattern"] == protocol.NONCE_PATTERN.pattern
    assert components["RequestId"]["maximum"] == 2**53 - 1
    batch = doc["components"]["messages"]["subscribeRequest"]["payload"]["oneOf"][1]
    assert batch["properties"]["channels"]["maxItems"] == protocol.MAX_BATCH
    react = doc["components"]["messages"]["reactRequest"]["payload"]
    assert react["properties"]["emoji"]["maxLength"] == protocol.MAX_EMOJI_CHARS
    assert f"at most {protocol.MAX_FRAME_BYTES // 1024} KiB" in doc["info"]["description"]


def test_every_request_example_is_valid_and_parses(doc: dict[str, Any]) -> None:
    seen = set()
    for name, item in doc["components"]["messages"].items():
        if not name.endswith("Request"):
            continue
        payload = deref(doc, item["payload"])
        jsonschema.Draft7Validator.check_schema(payload)
        assert item["examples"], f"{name} has no example"
        for example in item["examples"]:
            jsonschema.validate(example["payload"], payload, cls=jsonschema.Draft7Validator)
            command = protocol.parse(orjson.dumps(example["payload"]))
            assert command.op == example["payload"]["op"]
            seen.add(command.op)
    assert seen == protocol.OPS


# --- 3. a valid AsyncAPI 3.0 document -----------------------------------------------------------

REF = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string", "pattern": "^#/"}},
       "additionalProperties": False}
TEXT = {"type": "string", "minLength": 1}
EXTENSION = {"^x-": {}}
ASYNCAPI_SUBSET: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["asyncapi", "info"],
    "additionalProperties": False,
    "patternProperties": EXTENSION,
    "properties": {
        "asyncapi": {"const": "3.0.0"},
        "id": {"type": "string"},
        "defaultContentType": {"type": "string"},
        "info": {"type": "object", "required": ["title", "version"], "patternProperties": EXTENSION,
                 "additionalProperties": False,
                 "properties": {"title": TEXT, "version": TEXT, "description": {"type": "string"}}},
        "servers": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["host", "protocol"], "additionalProperties": False,
            "properties": {"host": TEXT, "protocol": TEXT, "protocolVersion": TEXT, "pathname": TEXT, "title": TEXT,
                           "summary": TEXT, "description": TEXT,
                           "variables": {"type": "object", "additionalProperties": {
                               "type": "object", "additionalProperties": False,
                               "properties": {"enum": {"type": "array", "items": {"type": "string"}},
                                              "default": {"type": "string"}, "description": {"type": "string"},
                                              "examples": {"type": "array"}}}},
                           "security": {"type": "array", "items": REF}}}},
        "channels": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False, "patternProperties": EXTENSION,
            "properties": {"address": {"type": ["string", "null"]}, "title": TEXT, "summary": TEXT,
                           "description": TEXT, "servers": {"type": "array", "items": REF},
                           "messages": {"type": "object", "additionalProperties": REF},
                           "bindings": {"type": "object", "properties": {"ws": {
                               "type": "object", "additionalProperties": False,
                               "properties": {"method": {"enum": ["GET", "POST"]}, "query": {"type": "object"},
                                              "headers": {"type": "object"},
                                              "bindingVersion": {"const": "0.1.0"}}}}}}}},
        "operations": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["action", "channel"], "additionalProperties": False,
            "patternProperties": EXTENSION,
            "properties": {"action": {"enum": ["send", "receive"]}, "channel": REF, "title": TEXT, "summary": TEXT,
                           "description": TEXT, "messages": {"type": "array", "items": REF},
                           "reply": {"type": "object", "additionalProperties": False,
                                     "properties": {"channel": REF, "messages": {"type": "array", "items": REF}}}}}},
        "components": {"type": "object", "additionalProperties": False, "properties": {
            "schemas": {"type": "object", "additionalProperties": {"type": ["object", "boolean"]}},
            "messages": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["payload"], "additionalProperties": False,
                "patternProperties": EXTENSION,
                "properties": {"name": TEXT, "title": TEXT, "summary": TEXT, "description": TEXT,
                               "contentType": TEXT, "payload": {"type": ["object", "boolean"]},
                               "examples": {"type": "array", "items": {
                                   "type": "object", "additionalProperties": False, "minProperties": 1,
                                   "properties": {"name": TEXT, "summary": TEXT, "headers": {"type": "object"},
                                                  "payload": {}}}}}}},
            "securitySchemes": {"type": "object", "additionalProperties": {
                "type": "object", "required": ["type"],
                "properties": {"type": {"enum": ["userPassword", "apiKey", "X509", "symmetricEncryption",
                                                 "asymmetricEncryption", "httpApiKey", "http", "oauth2",
                                                 "openIdConnect", "plain", "scramSha256", "scramSha512",
                                                 "gssapi"]},
                               "in": {"enum": ["user", "password", "query", "header", "cookie"]}}}}}},
    },
}


def test_the_document_is_asyncapi_3(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, ASYNCAPI_SUBSET, cls=jsonschema.Draft7Validator)


def test_every_reference_resolves_and_operations_use_their_channels_messages(doc: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        resolve(doc, ref)
    for name, operation in doc["operations"].items():
        channel = operation["channel"]["$ref"]
        used = operation.get("messages", []) + operation.get("reply", {}).get("messages", [])
        for item in used:  # the spec: an operation's messages MUST be a subset of its channel's
            assert item["$ref"].startswith(f"{channel}/messages/"), f"{name} uses {item['$ref']}"
    names = [m["name"] for m in doc["components"]["messages"].values()]
    assert len(names) == len(set(names))


def test_every_payload_is_a_draft7_schema(doc: dict[str, Any]) -> None:
    for item in doc["components"]["messages"].values():
        jsonschema.Draft7Validator.check_schema(deref(doc, item["payload"]))
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(deref(doc, schema))


def test_the_structure_check_is_not_vacuous(doc: dict[str, Any]) -> None:
    broken = {**doc, "operations": {**doc["operations"], "send_ping": {**doc["operations"]["send_ping"],
                                                                      "action": "publish"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ASYNCAPI_SUBSET, cls=jsonschema.Draft7Validator)
