"""JSON Schemas (draft 2020-12) of every frame the server sends, as docs/protocol.md describes them.

Server frames are one or more JSON objects separated by `\\n`; each object is one of:
- a reply `{"id": n, "ok": true, ...}` whose fields depend on the op of request n (REPLIES),
- an error reply `{"id": n | null, "ok": false, "error": {...}}` (ERROR),
- a push `{"op": ...}` without `id` (PUSHES); messages on `user:<id>` are notifications and are
  checked against their own schemas.
Schemas are closed (`additionalProperties: false`): a new field is a protocol change and must show up
here and in the document. REST fallback bodies are at the end.
"""

from __future__ import annotations

from typing import Any

from realtime import errors, protocol

Schema = dict[str, Any]


def reply_error_codes() -> set[str]:
    """Every reply error code constant of realtime/errors.py."""
    return {value for name, value in vars(errors).items()
            if name.isupper() and isinstance(value, str)}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return {"type": "object", "required": sorted(required), "additionalProperties": False,
            "properties": {**required, **(optional or {})}}


INT = {"type": "integer", "minimum": 0}
OFFSET = {"type": "integer", "minimum": 0}
EPOCH = {"type": "string", "minLength": 1, "maxLength": 64}
CHANNEL = {"type": "string", "pattern": protocol.CHANNEL_PATTERN.pattern,
           "maxLength": protocol.MAX_CHANNEL_LENGTH}
RANK = obj({"name": {"type": "string"}, "colour": {"type": "string", "pattern": "^#[0-9a-f]{6}$"},
            "badge": {"anyOf": [{"type": "string"}, {"type": "null"}]}})
USER = obj({"id": INT, "username": {"type": "string", "minLength": 1}}, {"rank": RANK})
ANY: Schema = {}



REACTION_SUMMARY = obj({"emoji": {"type": "string", "minLength": 1}, "count": {"type": "integer", "minimum": 1},
                        "users": {"type": "array", "items": INT}})
# What later events changed, on messages read back from storage (history, recovery from the database).
MESSAGE_STATE: dict[str, Schema] = {
    "rev": {"type": "integer", "minimum": 1}, "edited_at": {"type": "string"}, "deleted": {"const": True},
    "reactions": {"type": "array", "items": REACTION_SUMMARY}}


def message(data: Schema, channel: Schema = CHANNEL, sender: Schema | None = None,
            state: dict[str, Schema] | None = None) -> Schema:
    return obj({"op": {"const": "message"}, "channel": channel, "offset": {"type": "integer", "minimum": 1},
                "epoch": EPOCH, "data": data, "from": sender or {"anyOf": [USER, {"type": "null"}]},
                "ts": {"type": "number", "minimum": 0}}, state)


TARGET = {"type": "integer", "minimum": 1}
EVENT_DATA = {"anyOf": [
    obj({"type": {"const": "edit"}, "target": TARGET, "text": {"type": "string", "minLength": 1}}),
    obj({"type": {"const": "delete"}, "target": TARGET}),
    obj({"type": {"const": "reaction"}, "target": TARGET, "emoji": {"type": "string", "minLength": 1},
         "on": {"type": "boolean"}, "count": INT}),
]}
MESSAGE = message(ANY, state=MESSAGE_STATE)
# Notifications: messages the server publishes on `user:<id>` (server/notifications/service.py).
PERSONAL = {"type": "string", "pattern": r"^user:[0-9]+$"}
# Chat notifications name a channel and offset; the community's (forum, events, level-ups) none.
NOTIFICATION_KINDS = ["dm", "reply", "mention", "forum_reply", "forum_mention", "event_reminder", "group_request",
                      "group_approved", "level_up"]
NOTIFICATION_ITEM = obj({"id": INT, "kind": {"enum": NOTIFICATION_KINDS},
                         "channel": {"anyOf": [CHANNEL, {"type": "null"}]},
                         "offset": {"anyOf": [OFFSET, {"type": "null"}]}, "actor": {"anyOf": [USER, {"type": "null"}]},
                         "title": {"type": "string"}, "body": {"type": "string"}, "url": {"type": "string"},
                         "created_at": {"type": "string"}, "read": {"type": "boolean"}})
NOTIFICATION = message(obj({"type": {"const": "notification"}, "notification": NOTIFICATION_ITEM, "unread": INT}),
                       PERSONAL, {"type": "null"})
NOTIFICATIONS_READ = message(obj({"type": {"const": "notifications_read"}, "unread": INT,
                                  "ids": {"anyOf": [{"type": "array", "items": INT}, {"const": "all"}]}}),
                             PERSONAL, {"type": "null"})

READ = message(obj({"type": {"const": "read"}, "channel": CHANNEL, "offset": OFFSET, "channel_unread": INT,
                     "unread": INT}), PERSONAL, {"type": "null"})

PERSON = obj({"username": {"type": "string", "minLength": 3}, "display_name": {"type": ["string", "null"]},
              "avatar": {"anyOf": [{"type": "null"}, obj({"small": {"type": "string"}, "large": {"type": "string"}})]},
              "role": {"enum": ["admin", "moderator", "member", "bot"]}})
RELATIONSHIP = message(obj({"type": {"const": "relationship"}, "user": PERSON,
                            "relationship": {"enum": ["friends", "incoming", "outgoing", "none", "blocked"]}}),
                       PERSONAL, {"type": "null"})
FRIEND_PRESENCE = message(obj({"type": {"const": "friend_presence"}, "username": {"type": "string"},
                               "online": {"type": "boolean"}, "last_seen_at": {"type": ["string", "null"]}}),
                          PERSONAL, {"type": "null"})
PROFILE = message(obj({"type": {"const": "profile"}}, {
    "display_name": {"type": ["string", "null"]}, "bio": {"type": ["string", "null"]},
    "dm_policy": {"enum": ["everyone", "friends"]},
    "avatar": {"anyOf": [{"type": "null"}, obj({"small": {"type": "string"}, "large": {"type": "string"}})]}}),
    PERSONAL, {"type": "null"})

SANCTION = message(obj({"type": {"const": "sanction"}, "id": INT, "kind": {"enum": ["mute", "ban"]},
                        "channel": {"anyOf": [CHANNEL, {"type": "null"}]}, "until": {"type": ["string", "null"]},
                        "reason": {"type": "string"}}), PERSONAL, {"type": "null"})
SANCTION_LIFTED = message(obj({"type": {"const": "sanction_lifted"}, "id": INT}), PERSONAL, {"type": "null"})

XP = message(obj({"type": {"const": "xp"}, "action": {"type": "string"}, "gained": {"type": "integer"},
                  "xp": {"type": "integer"}, "level": {"type": "integer", "minimum": 1}, "title": {"type": "string"},
                  "colour": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}), PERSONAL, {"type": "null"})

PUSHES: dict[str, Schema] = {
    "xp": XP,
    "removed": obj({"op": {"const": "removed"}, "channel": CHANNEL, "reason": {"enum": ["kicked", "banned"]}}),
    "sanction": SANCTION,
    "sanction_lifted": SANCTION_LIFTED,
    "relationship": RELATIONSHIP,
    "friend_presence": FRIEND_PRESENCE,
    "profile": PROFILE,
    "message": MESSAGE,
    "notification": NOTIFICATION,
    "notifications_read": NOTIFICATIONS_READ,
    "read": READ,
    "presence_diff": obj({"op": {"const": "presence_diff"}, "channel": CHANNEL,
                          "joins": {"type": "array", "items": USER}, "leaves": {"type": "array", "items": USER}}),
    "typing": obj({"op": {"const": "typing"}, "channel": CHANNEL, "user": USER}),
}


def _reply(fields: dict[str, Schema] | None = None) -> Schema:
    return obj({"id": INT, "ok": {"const": True}, **(fields or {})})


ERROR_OBJECT = obj({"code": {"enum": sorted(reply_error_codes())}, "message": {"type": "string", "minLength": 1},
                    "temporary": {"type": "boolean"}},
                   {"retry_after": {"type": "number", "exclusiveMinimum": 0},
                    "details": {"type": "array", "minItems": 1, "items": obj(
                        {"field": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}})}})
ERROR = obj({"id": {"anyOf": [INT, {"type": "null"}]}, "ok": {"const": False}, "error": ERROR_OBJECT})
SUBSCRIBED = {"channel": CHANNEL, "offset": OFFSET, "epoch": EPOCH, "recovered": {"type": "boolean"},
              "missed": {"type": "array", "items": MESSAGE}}
BATCH_ITEM = {"anyOf": [obj({"ok": {"const": True}, **SUBSCRIBED}),
                        obj({"channel": CHANNEL, "ok": {"const": False}, "error": ERROR_OBJECT})]}

REPLIES: dict[str, Schema] = {
    "auth": _reply({"user": USER, "conn_id": {"type": "string", "minLength": 1}}),
    "subscribe": {"anyOf": [_reply(SUBSCRIBED),
                            _reply({"results": {"type": "array", "minItems": 1, "items": BATCH_ITEM}})]},
    "unsubscribe": _reply(),
    "publish": _reply({"offset": {"type": "integer", "minimum": 1}, "epoch": EPOCH}),
    "history": _reply({"channel": CHANNEL, "offset": OFFSET, "epoch": EPOCH,
                       "messages": {"type": "array", "items": MESSAGE}}),
    "presence": _reply({"channel": CHANNEL, "users": {"type": "array", "items": USER}}),
    "typing": _reply(),
    "refresh": _reply({"expires_at": {"type": ["number", "null"]}}),
    "ping": _reply({"pong": {"const": True}}),
    "read": _reply({"channel": CHANNEL, "offset": OFFSET, "channel_unread": INT, "unread": INT}),
    **{op: _reply({"channel": CHANNEL, "offset": {"type": "integer", "minimum": 1}, "epoch": EPOCH})
       for op in protocol.AMEND_OPS},
}
assert set(REPLIES) == protocol.OPS, "every op has a reply schema"


# Which frame kinds a server may send, by name: "reply:<op>", "error", "push:<op>".
FRAMES: dict[str, Schema] = {**{f"reply:{op}": s for op, s in REPLIES.items()}, "error": ERROR,
                             **{f"push:{op}": s for op, s in PUSHES.items()}}

# --- REST fallback (docs/protocol.md, "REST fallback") -----------------------------------------
REST: dict[str, Schema] = {
    "publish": obj({"offset": {"type": "integer", "minimum": 1}, "epoch": EPOCH}),
    "amend": obj({"channel": CHANNEL, "offset": {"type": "integer", "minimum": 1}, "epoch": EPOCH}),
    "history": obj({"channel": CHANNEL, "offset": OFFSET, "epoch": EPOCH,
                    "messages": {"type": "array", "items": MESSAGE},
                    "next_before": {"anyOf": [INT, {"type": "null"}]},
                    "next_since": {"anyOf": [INT, {"type": "null"}]}}),
    "presence": obj({"channel": CHANNEL, "users": {"type": "array", "items": USER}}),
    "error": obj({"error": obj({"code": {"type": "string"}, "message": {"type": "string"},
                                "request_id": {"type": "string"}},
                               {"details": {"type": "array"}})}),
}


def classify(frame: dict[str, Any], op_of: dict[int, str]) -> str:
    """The FRAMES key of one server object, given the ops of the requests sent so far."""
    if "ok" in frame:
        if frame["ok"] is not True:
            return "error"
        return f"reply:{op_of.get(frame.get('id'), '?')}"  # type: ignore[arg-type]
    data = frame.get("data")
    if frame.get("op") == "message" and str(frame.get("channel")).startswith("user:") and isinstance(data, dict):
        return f"push:{data.get('type')}"  # a notification: its own, stricter schema
    return f"push:{frame.get('op')}"
