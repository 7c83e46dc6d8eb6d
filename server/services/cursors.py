"""Opaque paging cursors shared by every cursor-paged list (forum, feed, groups, events).

A cursor is the sort position of the last item shown: base64 of a JSON array. Clients only hand
back what they were given; anything this server did not make is a 422 field error on `cursor`,
never a 500 or a silently different page.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import orjson

from server.errors import ValidationFailed

MAX_ID = 2**62  # ids are bigints; a larger "id" in a URL or cursor names nothing


def bad_cursor() -> ValidationFailed:
    return ValidationFailed(details=[{"field": "cursor", "code": "invalid_cursor",
                                      "message": "not a cursor from this list"}])


def encode(position: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode(cursor: str | None, length: int) -> list[Any] | None:
    """The position a cursor names (a list of `length` values), None for no cursor."""
    if not cursor:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise bad_cursor() from None
    if not isinstance(value, list) or len(value) != length:
        raise bad_cursor()
    return value


def valid_id(value: Any) -> int:
    """An id read from a cursor: a positive bigint, or the cursor is bad."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < MAX_ID:
        raise bad_cursor()
    return value


def encode_id(last_id: int) -> str:
    """For lists ordered by id alone (ids grow with time)."""
    return encode([last_id])


def decode_id(cursor: str | None) -> int | None:
    position = decode(cursor, 1)
    return None if position is None else valid_id(position[0])
