"""Live community streams: `live:<kind>:<key>` channels the server publishes on (forum threads and
categories, the feed, posts, groups, events).

They are ephemeral channels of the realtime node, so they have offsets, an epoch and the hot
history: a client that reconnects subscribes with `since` and gets what it missed, or
`recovered: false` and reloads the resource over HTTP (the database is the truth; the stream only
says what changed). Each area registers who may read its kind of stream; nobody publishes on
them but the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from realtime import errors
from realtime.connection import ConnUser
from realtime.errors import ReplyError
from server.observability.logging import get_logger

log = get_logger("vonix.live")

# (the reader, the key after `live:<kind>:`) -> may they read it?
Check = Callable[[ConnUser, str], Awaitable[bool]]


class LiveStreams:
    def __init__(self, node: Any) -> None:
        self.node = node
        self._checks: dict[str, Check] = {}

    def register(self, kind: str, check: Check) -> None:
        self._checks[kind] = check

    async def authorize(self, user: ConnUser, name: str, action: str) -> None:
        """`name` is the channel without `live:`. Readers only: publishing is the server's."""
        if action in ("publish", "amend"):
            raise ReplyError(errors.FORBIDDEN, "live streams are published by the server")
        kind, _, key = name.partition(":")
        check = self._checks.get(kind)
        if check is None:
            raise ReplyError(errors.FORBIDDEN, "no such stream")
        if not await check(user, key):
            raise ReplyError(errors.FORBIDDEN, "you cannot read this")

    async def publish(self, channel: str, data: dict[str, Any]) -> None:
        """An outage is logged, not raised: the change is stored either way, and a reader that
        missed it reloads (its next subscribe answers `recovered: false`)."""
        try:
            await self.node.publish(channel, data)
        except Exception as exc:
            log.warning("live_publish_failed", channel=channel, error=exc.__class__.__name__)
