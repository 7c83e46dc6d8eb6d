"""Friends told when a member comes and goes, in batches, after a short grace.

The realtime node reports a member's first connection and last disconnection on this replica.
Doing the lookups for each one as it happened (friends, username, a cluster-wide connection count,
an UPDATE of `last_seen_at`) cost the connect path dearly in `make bench`: a page reload, a
reconnect storm or a bot cycling its sockets is thousands of transitions. So transitions are only
recorded here (a dict write) and a single flusher handles all that are due in a few queries:

- An "offline" waits `offline_grace` seconds: a reload or a network hiccup reconnects within it,
  cancels it, and friends see no flicker (and no write happens at all).
- An "online" for a member whose "offline" is still pending is dropped: friends never saw them go.
- Due offlines are checked against the presence records in one round trip (still connected on
  another replica: nothing to say), stamped `last_seen_at` in one UPDATE, and announced.
- Friends and usernames of everyone being announced come from one query each.

The order of events per member is kept: one flusher, transitions applied in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import friendships, users
from server.db.types import utcnow
from server.observability.logging import get_logger

log = get_logger("vonix.people")

Spawn = Callable[[Coroutine[Any, Any, Any], str], None]
Publish = Callable[[int, dict[str, Any]], Awaitable[None]]
LiveCheck = Callable[[Sequence[int]], Awaitable[set[int]]]

OFFLINE_GRACE_SECONDS = 2.0
ONLINE_DELAY_SECONDS = 0.05  # gathers a burst of connects into one batch; far below what a person notices


@dataclass(slots=True)
class _Pending:
    online: bool
    due: float
    at: datetime


class FriendPresence:
    def __init__(self, db: Database, spawn: Spawn, publish: Publish, still_connected: LiveCheck,
                 offline_grace: float = OFFLINE_GRACE_SECONDS) -> None:
        self.db = db
        self.spawn = spawn
        self.publish = publish
        self.still_connected = still_connected
        self.offline_grace = offline_grace
        self._pending: dict[int, _Pending] = {}
        self._flusher_running = False
        self._hurry = asyncio.Event()

    def online(self, user_id: int) -> None:
        pending = self._pending.get(user_id)
        if pending is not None and not pending.online:
            del self._pending[user_id]  # back within the grace: friends never saw them leave
            return
        self._queue(user_id, _Pending(True, time.monotonic() + ONLINE_DELAY_SECONDS, utcnow()))

    def offline(self, user_id: int) -> None:
        pending = self._pending.get(user_id)
        if pending is not None and pending.online:
            del self._pending[user_id]  # came and went before anyone was told: nothing to say
            return
        self._queue(user_id, _Pending(False, time.monotonic() + self.offline_grace, utcnow()))

    def hurry(self) -> None:
        """Shutting down: announce what is pending now instead of after the grace."""
        self._hurry.set()

    def _queue(self, user_id: int, pending: _Pending) -> None:
        self._pending[user_id] = pending
        if not self._flusher_running:
            self._flusher_running = True
            self.spawn(self._flush_loop(), "friend-presence")

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                now = time.monotonic()
                wait = min(p.due for p in self._pending.values()) - now
                if wait > 0 and not self._hurry.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._hurry.wait(), wait)
                now = time.monotonic()
                hurry = self._hurry.is_set()
                due = [(uid, p) for uid, p in self._pending.items() if hurry or p.due <= now]
                for uid, _ in due:
                    del self._pending[uid]
                try:
                    await self._announce(due)
                except Exception as exc:  # friends miss one transition; the next one corrects it
                    log.warning("friend_presence_failed", users=len(due), error=exc.__class__.__name__)
        finally:
            self._flusher_running = False

    async def _announce(self, due: list[tuple[int, _Pending]]) -> None:
        offline = [uid for uid, p in due if not p.online]
        if offline:
            back = await self.still_connected(offline)  # connected on another replica
            due = [(uid, p) for uid, p in due if p.online or uid not in back]
            gone = [uid for uid, p in due if not p.online]
            if gone:
                seen = max(p.at for _, p in due if not p.online)
                due = [(uid, p if p.online else _Pending(False, p.due, seen)) for uid, p in due]
                await self._stamp_last_seen(gone, seen)
        if not due:
            return
        ids = [uid for uid, _ in due]
        rows = await self.db.fetch_all("friends.ids_many", sa.select(
            friendships.c.user_id, friendships.c.friend_id).where(
            friendships.c.user_id.in_(ids), friendships.c.status == "accepted"))
        friends: dict[int, list[int]] = {}
        for row in rows:
            friends.setdefault(row["user_id"], []).append(row["friend_id"])
        if not friends:
            return
        names = {row["id"]: row["username"] for row in await self.db.fetch_all("users.usernames", sa.select(
            users.c.id, users.c.username).where(users.c.id.in_(list(friends))))}
        for uid, pending in due:
            if uid not in friends or uid not in names:
                continue
            event = {"type": "friend_presence", "username": names[uid], "online": pending.online,
                     "last_seen_at": None if pending.online else pending.at.isoformat()}
            for friend in friends[uid]:
                await self.publish(friend, event)

    async def _stamp_last_seen(self, gone: list[int], at: datetime) -> None:
        """One statement for the batch: they all get the latest disconnect among them (within one
        flush interval of their own; "last seen" is shown to the minute)."""
        await self.db.execute("users.last_seen", users.update().where(users.c.id.in_(gone)).values(
            last_seen_at=at))
