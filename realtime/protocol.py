"""Wire protocol v1: client frames parsed and validated, server frames encoded. No I/O here.

A client frame is one JSON object with an integer `id` and an `op`. A server frame is one or more
JSON objects separated by `\\n` (the server coalesces what is queued for a connection). Push
frames (no `id`) are encoded once per message, never per subscriber.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

from realtime import errors

MAX_FRAME_BYTES = 64 * 1024
MAX_CHANNEL_LENGTH = 160
CHANNEL_PATTERN = re.compile(r"^(room|dm|user|bot|live|status):[A-Za-z0-9_\-:.]{1,150}$")
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_\-:.]{1,64}$")

AMEND_OPS = frozenset({"edit", "delete", "react", "unreact"})  # change a stored message: an event of its own
OPS = frozenset({"auth", "subscribe", "unsubscribe", "publish", "history", "presence", "typing", "refresh",
                 "ping", "read"}) | AMEND_OPS
NEEDS_CHANNEL = frozenset({"subscribe", "unsubscribe", "publish", "history", "presence", "typing",
                           "read"}) | AMEND_OPS
MAX_EMOJI_CHARS = 32
MAX_OFFSET = 2**62
MAX_BATCH = 100  # channels in one batch `subscribe` (= the default WS_MAX_SUBSCRIPTIONS)
# How deep `data` may nest. orjson decodes 1024 levels but encodes only 254, and the server wraps
# `data` again (push, history reply, batch recovery: 4 levels): deeper data would be accepted, then
# fail to encode as a server error. 64 is far beyond any message.
MAX_DATA_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Since:
    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Target:
    """One channel of a batch `subscribe`, with the position to recover from."""

    channel: str
    since: Since | None = None


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    op: str
    channel: str | None = None
    data: Any = None
    nonce: str | None = None
    since: Since | None = None
    limit: int | None = None
    token: str | None = None
    offset: int | None = None  # `read`: the newest offset the user has seen; edit/delete/react: the message
    channels: tuple[Target, ...] | None = None  # a batch `subscribe` (then `channel` is None)
    presence: bool | None = None  # `subscribe`: send presence diffs? None: the default for the user kind
    emoji: str | None = None  # `react` / `unreact`


class FrameError(Exception):
    """The frame cannot be processed; `request_id` is echoed when the frame had a usable id."""

    def __init__(self, code: str, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(raw: str | bytes) -> Command:
    """Validate one client frame into a Command, or raise FrameError with a precise code."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError(errors.INVALID_JSON, "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise FrameError(errors.INVALID_FRAME, "a frame must be a JSON object")
    request_id = frame.get("id")
    if not _int(request_id) or not (0 <= request_id < 2**53):
        raise FrameError(errors.INVALID_FRAME, "`id` must be a non-negative integer")
    op = frame.get("op")
    if not isinstance(op, str):
        raise FrameError(errors.INVALID_FRAME, "`op` must be a string", request_id)
    if op not in OPS:
        raise FrameError(errors.UNKNOWN_OP, f"unknown op {op[:32]!r}", request_id)

    channels = None
    channel = frame.get("channel")
    if op == "subscribe" and "channels" in frame:
        if channel is not None or "since" in frame:
            raise FrameError(errors.INVALID_FRAME, "a batch subscribe gives `channels` (each with its own "
                             "`since`), not `channel` or `since`", request_id)
        channels = _targets(frame["channels"], request_id)
    elif op in NEEDS_CHANNEL:
        _check_channel(channel, request_id)
    else:
        channel = None

    since = None
    if "since" in frame and frame["since"] is not None and op in ("subscribe", "history"):
        since = _since(frame["since"], request_id)

    presence = frame.get("presence")
    if presence is not None and (op != "subscribe" or not isinstance(presence, bool)):
        raise FrameError(errors.INVALID_FRAME, "`presence` is a boolean flag of `subscribe`", request_id)

    limit = frame.get("limit")
    if limit is not None and (not _int(limit) or not 1 <= limit <= 1000):
        raise FrameError(errors.INVALID_FRAME, "`limit` must be an integer from 1 to 1000", request_id)

    nonce = frame.get("nonce")
    if nonce is not None and (not isinstance(nonce, str) or not NONCE_PATTERN.fullmatch(nonce)):
        raise FrameError(errors.INVALID_FRAME, "`nonce` must be 1-64 characters [A-Za-z0-9_-:.]", request_id)

    token = frame.get("token")
    if op in ("auth", "refresh"):
        if not isinstance(token, str) or not 10 <= len(token) <= 4096:
            raise FrameError(errors.INVALID_FRAME, "`token` is required", request_id)

    offset = None
    if op == "read":
        offset = frame.get("offset")
        if not _int(offset) or not 0 <= offset <= MAX_OFFSET:
            raise FrameError(errors.INVALID_FRAME, "`offset` must be a non-negative integer", request_id)
    elif op in AMEND_OPS:
        offset = frame.get("offset")
        if not _int(offset) or not 1 <= offset <= MAX_OFFSET:
            raise FrameError(errors.INVALID_FRAME, "`offset` must be the offset of a message (a positive integer)",
                             request_id)

    emoji = None
    if op in ("react", "unreact"):
        emoji = frame.get("emoji")
        if not isinstance(emoji, str) or not 1 <= len(emoji) <= MAX_EMOJI_CHARS:
            raise FrameError(errors.INVALID_FRAME, "`emoji` must be one emoji", request_id)

    data = frame.get("data")
    if op in ("publish", "edit"):
        if "data" not in frame:
            raise FrameError(errors.INVALID_FRAME, "`data` is required", request_id)
        if _too_deep(data):
            raise FrameError(errors.INVALID_FRAME, f"`data` nests more than {MAX_DATA_DEPTH} levels", request_id)
    return Command(request_id, op, channel, data, nonce, since, limit, token, offset, channels, presence, emoji)


def _too_deep(value: Any) -> bool:
    """True when `value` has arrays/objects nested deeper than MAX_DATA_DEPTH (iterative: a
    recursion over hostile input must not be the thing that fails)."""
    level: list[Any] = [value]
    for _ in range(MAX_DATA_DEPTH):
        level = [child for item in level if isinstance(item, (list, dict))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return any(isinstance(item, (list, dict)) for item in level)


def _check_channel(channel: Any, request_id: int) -> str:
    if not isinstance(channel, str):
        raise FrameError(errors.INVALID_FRAME, "`channel` is required", request_id)
    if len(channel) > MAX_CHANNEL_LENGTH or not CHANNEL_PATTERN.fullmatch(channel):
        raise FrameError(errors.INVALID_CHANNEL, "channels look like namespace:name "
                         "(room, dm, user, bot)", request_id)
    return channel


def _since(raw: Any, request_id: int) -> Since:
    if (not isinstance(raw, dict) or not _int(raw.get("offset")) or raw["offset"] < 0
            or not isinstance(raw.get("epoch"), str) or len(raw["epoch"]) > 64):
        raise FrameError(errors.INVALID_FRAME, "`since` must be {offset: int >= 0, epoch: string}", request_id)
    return Since(raw["offset"], raw["epoch"])


def _targets(raw: Any, request_id: int) -> tuple[Target, ...]:
    """A batch subscribe's channels: each a name or {channel, since}; no repeats, at most MAX_BATCH.
    One bad item refuses the frame (nothing is subscribed): a client bug, not a permission."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_BATCH:
        raise FrameError(errors.INVALID_FRAME, f"`channels` must be a list of 1 to {MAX_BATCH} channels",
                         request_id)
    targets: dict[str, Target] = {}
    for item in raw:
        if isinstance(item, dict):
            unknown = set(item) - {"channel", "since"}
            if unknown:
                raise FrameError(errors.INVALID_FRAME, "a `channels` item is a name or {channel, since}",
                                 request_id)
            name = _check_channel(item.get("channel"), request_id)
            since = _since(item["since"], request_id) if item.get("since") is not None else None
        else:
            name, since = _check_channel(item, request_id), None
        if name in targets:
            raise FrameError(errors.INVALID_FRAME, f"{name} appears twice in `channels`", request_id)
        targets[name] = Target(name, since)
    return tuple(targets.values())


# --- server frames ----------------------------------------------------------------------------

def reply(request_id: int, **fields: Any) -> bytes:
    return orjson.dumps({"id": request_id, "ok": True, **fields})


def _error(code: str, message: str, temporary: bool, retry_after: float | None,
           details: tuple[dict[str, str], ...]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "temporary": temporary}
    if retry_after is not None:
        error["retry_after"] = round(retry_after, 3)
    if details:
        error["details"] = list(details)
    return error


def error_reply(request_id: int | None, code: str, message: str, *, temporary: bool = False,
                retry_after: float | None = None, details: tuple[dict[str, str], ...] = ()) -> bytes:
    return orjson.dumps({"id": request_id, "ok": False,
                         "error": _error(code, message, temporary, retry_after, details)})


def error_object(code: str, message: str, *, temporary: bool = False) -> bytes:
    """The `error` object alone: one channel's refusal inside a batch reply."""
    return orjson.dumps(_error(code, message, temporary, None, ()))


def message_push(channel: str, offset: int, epoch: str, data: Any, sender: dict[str, Any] | None,
                 ts: float) -> bytes:
    """The push every subscriber of a channel receives: encoded once per message."""
    return orjson.dumps({"op": "message", "channel": channel, "offset": offset, "epoch": epoch,
                         "data": data, "from": sender, "ts": round(ts, 3)})


PRESENCE_DIFF_PREFIX = b'{"op":"presence_diff"'


def presence_diff(channel: str, joins: list[dict[str, Any]], leaves: list[dict[str, Any]]) -> bytes:
    """Who arrived and who left a channel since the last diff (Phoenix's `presence_diff`): one push
    per channel per interval instead of one per join, whatever the crowd."""
    return orjson.dumps({"op": "presence_diff", "channel": channel, "joins": joins, "leaves": leaves})


def removed_push(channel: str, reason: str) -> bytes:
    """You were unsubscribed by the server (kicked or banned from the room): do not resubscribe."""
    return orjson.dumps({"op": "removed", "channel": channel, "reason": reason})


def typing_push(channel: str, user: dict[str, Any]) -> bytes:
    return orjson.dumps({"op": "typing", "channel": channel, "user": user})
