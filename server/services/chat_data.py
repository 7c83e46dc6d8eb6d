"""The one schema of a chat message's `data` (rooms and direct messages), for the websocket and REST.

`{"text": str, "reply_to"?: int, "cid"?: str, "via"?: {...}, "system"?: str}` and nothing else:
- `text`: 1 to 4,000 characters once trimmed (stored trimmed; counted in code points, as a reader
  counts them), no control characters but newline and tab (a CRLF pair counts as a newline);
- `reply_to`: the offset of an existing message of the same channel;
- `cid`: the sending client's id for its message (the PWA's outbox id), as a nonce is spelled.
- `via` (bots only: the game chat and Discord bridges): who the message is relayed for,
  `{"source": "game" | "discord", "name": 1-32 characters, "avatar"?: an https URL}`; shown as
  "[game] Steve". A member cannot claim to speak for someone else;
- `system` (only with `via`): a game event rather than chat, one of join, leave, death,
  advancement; shown as a line of the conversation, not a bubble.

Clients used to be able to store a 20,009-character message, a blank one, or `{"text": 42}` (shown
as raw JSON). Refusals name the field so a client can say what is wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from realtime import errors
from realtime.errors import ReplyError
from realtime.protocol import NONCE_PATTERN

MAX_TEXT = 4000
FIELDS = frozenset({"text", "reply_to", "cid", "via", "system"})
VIA_SOURCES = frozenset({"game", "discord"})
SYSTEM_EVENTS = frozenset({"join", "leave", "death", "advancement"})
MAX_VIA_NAME = 32
MAX_AVATAR_URL = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # Cc but newline and tab


def _refuse(field: str, code: str, message: str) -> ReplyError:
    return ReplyError(errors.INVALID_DATA, f"{field}: {message}",
                      details=({"field": field, "code": code, "message": message},))


def control_character(text: str) -> str | None:
    """The name of the first control character other than newline and tab in `text`, if any
    (chat messages and room topics refuse them)."""
    bad = _CONTROL.search(text)
    return None if bad is None else unicodedata.name(bad.group(), f"U+{ord(bad.group()):04X}")


def clean_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _refuse("data.text", "invalid_type", "must be a string")
    text = value.replace("\r\n", "\n").strip()
    if not text:
        raise _refuse("data.text", "empty", "must not be empty")
    if len(text) > MAX_TEXT:
        raise _refuse("data.text", "too_long", f"at most {MAX_TEXT:,} characters ({len(text):,} sent)")
    name = control_character(text)
    if name is not None:
        raise _refuse("data.text", "control_character", f"control characters are not allowed ({name})")
    return text


async def validate_chat_data(data: Any, last_offset: Callable[[], Awaitable[int]], *,
                             relaying: bool = False) -> dict[str, Any]:
    """The data to store, or ReplyError(invalid_data); `last_offset` is only read for a reply.
    `relaying`: the publisher is a bot, which may speak for someone elsewhere (`via`)."""
    if not isinstance(data, dict):
        raise _refuse("data", "invalid_type", 'must be an object like {"text": "hello"}')
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise _refuse(f"data.{unknown[0][:40]}", "unknown_field",
                      "not a field of a chat message (text, reply_to, cid; via and system for bridges)")
    clean: dict[str, Any] = {"text": clean_text(data.get("text"))}
    if "reply_to" in data and data["reply_to"] is not None:
        reply_to = data["reply_to"]
        if not isinstance(reply_to, int) or isinstance(reply_to, bool) or reply_to < 1:
            raise _refuse("data.reply_to", "invalid_type", "must be the offset (a positive integer) of a message")
        if reply_to > await last_offset():
            raise _refuse("data.reply_to", "unknown_message", "no message of this channel has that offset")
        clean["reply_to"] = reply_to
    if "cid" in data:
        cid = data["cid"]
        if not isinstance(cid, str) or not NONCE_PATTERN.fullmatch(cid):
            raise _refuse("data.cid", "invalid", "must be 1-64 characters [A-Za-z0-9_-:.]")
        clean["cid"] = cid
    if "via" in data:
        if not relaying:
            raise _refuse("data.via", "bots_only", "only bridge bots relay messages for someone else")
        clean["via"] = _clean_via(data["via"])
    if "system" in data:
        if "via" not in clean:
            raise _refuse("data.system", "needs_via", "a game event names who it is about in `via`")
        if data["system"] not in SYSTEM_EVENTS:
            raise _refuse("data.system", "invalid", f"one of {', '.join(sorted(SYSTEM_EVENTS))}")
        clean["system"] = data["system"]
    return clean


def _clean_via(via: Any) -> dict[str, str]:
    if not isinstance(via, dict):
        raise _refuse("data.via", "invalid_type", 'must be an object like {"source": "game", "name": "Steve"}')
    unknown = sorted(str(key) for key in via if key not in ("source", "name", "avatar"))
    if unknown:
        raise _refuse(f"data.via.{unknown[0][:40]}", "unknown_field", "not a field of via (source, name, avatar)")
    if via.get("source") not in VIA_SOURCES:
        raise _refuse("data.via.source", "invalid", f"one of {', '.join(sorted(VIA_SOURCES))}")
    name = via.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _refuse("data.via.name", "empty", "must be a non-empty string")
    name = " ".join(name.split())
    if len(name) > MAX_VIA_NAME:
        raise _refuse("data.via.name", "too_long", f"at most {MAX_VIA_NAME} characters")
    if control_character(name) is not None:
        raise _refuse("data.via.name", "control_character", "control characters are not allowed")
    clean = {"source": str(via["source"]), "name": name}
    avatar = via.get("avatar")
    if avatar is not None:
        if not isinstance(avatar, str) or not avatar.startswith("https://") or len(avatar) > MAX_AVATAR_URL \
                or control_character(avatar) is not None or any(c.isspace() for c in avatar):
            raise _refuse("data.via.avatar", "invalid", f"an https:// URL of at most {MAX_AVATAR_URL} characters")
        clean["avatar"] = avatar
    return clean
