"""Presence as members see it: joins and leaves batched into the store, edges coalesced into diffs.

Two costs grew with the square of a crowd. Every join used to publish its own `join` push to
every subscriber: 2,000 members arriving in a room after a deploy meant about two million pushes.
Now a channel's edges (a user's first connection in, their last one out) wait in a per-channel
diff for at most `interval` and go out as one `presence_diff` push (Phoenix's model): for the same
2,000 arrivals, a few dozen pushes per subscriber. A user who joins and leaves within one interval
cancels out and is never announced. And every join or leave used to be its own Redis round trip;
they now go through a `Batcher`, one pipeline per batch.

`interval = 0` sends each edge at once, as its own diff: what one push per join used to cost (the
benchmark's reference).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from realtime import protocol
from realtime.batching import Batcher
from realtime.logs import get_logger
from realtime.presence.base import Presence, PresenceChange, PresenceUnavailable, PresenceUser

log = get_logger("vonix.presence")

PublishControl = Callable[[str, bytes], Awaitable[None]]


class _Diff:
    __slots__ = ("joins", "leaves")

    def __init__(self) -> None:
        self.joins: dict[int, PresenceUser] = {}
        self.leaves: dict[int, PresenceUser] = {}

    def add(self, join: bool, user: PresenceUser) -> None:
        arrived, gone = (self.joins, self.leaves) if join else (self.leaves, self.joins)
        if gone.pop(user.user_id, None) is None:  # left then back (or in then out): nothing to say
            arrived[user.user_id] = user

    def __bool__(self) -> bool:
        return bool(self.joins or self.leaves)


class PresenceFeed:
    def __init__(self, presence: Presence, publish_control: PublishControl, *, interval: float = 0.2,
                 metrics: Any = None) -> None:
        self.presence = presence
        self.publish_control = publish_control
        self.interval = interval
        self._changes: Batcher[PresenceChange, bool] = Batcher(self._apply)
        self._diffs: dict[str, _Diff] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.diffs_sent = 0
        self._metric = metrics.counter("vonix_ws_presence_diffs_total",
                                       "presence_diff pushes published by this replica.") if metrics else None

    async def join(self, channels: list[str], conn_id: str, user: PresenceUser) -> None:
        """A connection joins its channels' presence: all of them in the same batch."""
        await self._change([PresenceChange(True, channel, conn_id, user) for channel in channels])

    async def leave(self, channels: list[str], conn_id: str, user: PresenceUser) -> None:
        await self._change([PresenceChange(False, channel, conn_id, user) for channel in channels])

    def report(self, channel: str, user: PresenceUser, *, join: bool) -> None:
        """An edge the store reported by itself (a sweep found an expired user)."""
        self._note(channel, user, join)

    async def _change(self, changes: list[PresenceChange]) -> None:
        if not changes:
            return
        try:
            edges = await self._changes.many(changes)
        except PresenceUnavailable as exc:  # the heartbeat re-joins; expiry and the sweep tidy up
            log.warning("presence_change_failed", join=changes[0].join, channels=len(changes), error=str(exc))
            return
        for change, edge in zip(changes, edges, strict=True):
            if edge:
                self._note(change.channel, change.user, change.join)

    async def _apply(self, changes: Sequence[PresenceChange]) -> list[bool]:
        return await self.presence.apply(changes)

    def _note(self, channel: str, user: PresenceUser, join: bool) -> None:
        if not self.interval:  # uncoalesced: one push per edge
            one = [user.as_dict()]
            self._start_sending([(channel, protocol.presence_diff(channel, one if join else [], [] if join else one))])
            return
        diff = self._diffs.get(channel)
        if diff is None:
            diff = self._diffs[channel] = _Diff()
        diff.add(join, user)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        diffs, self._diffs = self._diffs, {}
        frames = [(channel, protocol.presence_diff(channel, [u.as_dict() for u in diff.joins.values()],
                                                   [u.as_dict() for u in diff.leaves.values()]))
                  for channel, diff in diffs.items() if diff]
        if frames:
            self._start_sending(frames)

    def _start_sending(self, frames: list[tuple[str, bytes]]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(frames))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, frames: list[tuple[str, bytes]]) -> None:
        for channel, frame in frames:
            try:
                await self.publish_control(channel, frame)
            except Exception as exc:  # a missed diff: clients re-read `presence` after a reconnect
                log.warning("presence_diff_failed", channel=channel, error=exc.__class__.__name__)
                continue
            self.diffs_sent += 1
            if self._metric is not None:
                self._metric.inc()

    async def close(self) -> None:
        """Send what is pending now (shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
