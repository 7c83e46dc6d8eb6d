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
CHANNEL_PATTERN = re.compile(r"^(room|dm|user|bot):[A-Za-z0-9_\-:.]{1,150}$")
NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_\-:.]{1,64}$")

OPS = frozenset({"auth", "subscribe", "unsubscribe", "publish", "history", "presence", "typing", "refresh",
                 "ping", "read"})
NEEDS_CHANNEL = frozenset({"subscribe", "unsubscribe", "publish", "history", "presence", "typing", "read"})
MAX_OFFSET = 2**62


@dataclass(frozen=True, slots=True)
class Since:
    offset: int
    epoch: str


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
    offset: int | None = None  # `read`: the newest offset the user has seen


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

    channel = frame.get("channel")
    if op in NEEDS_CHANNEL:
        if not isinstance(channel, str):
            raise FrameError(errors.INVALID_FRAME, "`channel` is required", request_id)
        if len(channel) > MAX_CHANNEL_LENGTH or not CHANNEL_PATTERN.match(channel):
            raise FrameError(errors.INVALID_CHANNEL, "channels look like namespace:name "
                             "(room, dm, user, bot)", request_id)
    else:
        channel = None

    since = None
    if "since" in frame and frame["since"] is not None and op in ("subscribe", "history"):
        raw_since = frame["since"]
        if (not isinstance(raw_since, dict) or not _int(raw_since.get("offset"))
                or raw_since["offset"] < 0 or not isinstance(raw_since.get("epoch"), str)
                or len(raw_since["epoch"]) > 64):
            raise FrameError(errors.INVALID_FRAME, "`since` must be {offset: int >= 0, epoch: string}",
                             request_id)
        since = Since(raw_since["offset"], raw_since["epoch"])

    limit = frame.get("limit")
    if limit is not None and (not _int(limit) or not 1 <= limit <= 1000):
        raise FrameError(errors.INVALID_FRAME, "`limit` must be an integer from 1 to 1000", request_id)

    nonce = frame.get("nonce")
    if nonce is not None and (not isinstance(nonce, str) or not NONCE_PATTERN.match(nonce)):
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

    data = frame.get("data")
    if op == "publish" and "data" not in frame:
        raise FrameError(errors.INVALID_FRAME, "`data` is required", request_id)
    return Command(request_id, op, channel, data, nonce, since, limit, token, offset)


# --- server frames ----------------------------------------------------------------------------

def reply(request_id: int, **fields: Any) -> bytes:
    return orjson.dumps({"id": request_id, "ok": True, **fields})


def error_reply(request_id: int | None, code: str, message: str, *, temporary: bool = False,
                retry_after: float | None = None, details: tuple[dict[str, str], ...] = ()) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "temporary": temporary}
    if retry_after is not None:
        error["retry_after"] = round(retry_after, 3)
    if details:
        error["details"] = list(details)
    return orjson.dumps({"id": request_id, "ok": False, "error": error})


def message_push(channel: str, offset: int, epoch: str, data: Any, sender: dict[str, Any] | None,
                 ts: float) -> bytes:
    """The push every subscriber of a channel receives: encoded once per message."""
    return orjson.dumps({"op": "message", "channel": channel, "offset": offset, "epoch": epoch,
                         "data": data, "from": sender, "ts": round(ts, 3)})


def presence_push(op: str, channel: str, user: dict[str, Any]) -> bytes:
    return orjson.dumps({"op": op, "channel": channel, "user": user})


def typing_push(channel: str, user: dict[str, Any]) -> bytes:
    return orjson.dumps({"op": "typing", "channel": channel, "user": user})
