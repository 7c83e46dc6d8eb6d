"""The reconnect delay of the bot client, pure and seedable so its jitter can be unit-tested.

`realtime.client` re-exports it.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Capped exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random) -> None:
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base, self.cap, self.rng = base, cap, rng
        self.attempt = 0

    def ceiling(self) -> float:
        return min(self.cap, self.base * 2 ** min(self.attempt, 32))

    def next(self) -> float:
        delay = self.rng() * self.ceiling()
        self.attempt += 1
        return delay

    def soon(self) -> float:
        """For 1012: a small jitter so a drained replica's clients do not return as one herd."""
        return self.rng() * min(self.base, 1.0)

    def reset(self) -> None:
        self.attempt = 0
