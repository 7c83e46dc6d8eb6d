"""The last frames this replica delivered on each stored channel it follows, in memory.

After a deploy, every member reconnects to the remaining replicas with `since` on each room, and
most of them were away for a second or two: the messages they missed are the last few this replica
has just delivered on that channel itself. Reading them back from Redis's hot window costs a
script call, a reply of every missed frame and its parsing per subscriber, while the replica has
them in hand. So it keeps, per followed channel, the newest `size` frames as one contiguous run of
offsets, and a resubscribe whose gap lies within that run is answered from here; any other (older
than the run, another epoch, a run broken by a gap fill) goes to Redis and the database as before.

Only what the replica delivered goes in, in delivery order, so a run holds exactly the frames its
subscribers saw. A frame that does not follow the run's last offset (a gap, an epoch change)
starts a new run. The cost is one append per message (never per subscriber) and, at most, `size`
frames per followed channel; a channel nobody here follows any more is forgotten with it.
"""

from __future__ import annotations

import itertools
from collections import deque


class _Run:
    __slots__ = ("epoch", "frames", "last")

    def __init__(self, epoch: str | None, offset: int, size: int) -> None:
        self.epoch = epoch
        self.last = offset - 1
        self.frames: deque[bytes] = deque(maxlen=size)


class RecentFrames:
    def __init__(self, size: int) -> None:
        self.size = size
        self._runs: dict[str, _Run] = {}

    def add(self, channel: str, epoch: str | None, offset: int, frame: bytes) -> None:
        """Remember a frame just delivered here at `offset` (stored channels, delivery order)."""
        if not self.size:
            return
        run = self._runs.get(channel)
        if run is None or run.last != offset - 1 or run.epoch != epoch:
            run = self._runs[channel] = _Run(epoch, offset, self.size)
        run.frames.append(frame)
        run.last = offset

    def between(self, channel: str, epoch: str, after: int, last: int) -> list[tuple[int, bytes]] | None:
        """Every frame with `after` < offset <= `last`, or None unless the run holds all of them."""
        run = self._runs.get(channel)
        if run is None or run.epoch != epoch or last > run.last or after >= last:
            return None
        first = run.last - len(run.frames) + 1
        if after + 1 < first:
            return None
        start = after + 1 - first
        return list(zip(range(after + 1, last + 1), itertools.islice(run.frames, start, start + last - after),
                        strict=True))

    def forget(self, channel: str) -> None:
        self._runs.pop(channel, None)

    def __len__(self) -> int:
        """Frames held, over all channels (a gauge)."""
        return sum(len(run.frames) for run in self._runs.values())
