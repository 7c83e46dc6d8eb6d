"""Allowed/limited counts per rule and the most limited keys, over the last hour, in process.

Five-minute buckets, twelve kept; each bucket remembers at most `max_keys` limited keys (the least
limited are forgotten first), so an address scan cannot grow it without bound.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

BUCKET_SECONDS = 300
BUCKETS = 12  # one hour


class LocalAnalytics:
    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = 1000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: deque[tuple[int, Counter[str], Counter[str]]] = deque(maxlen=BUCKETS)

    def _bucket(self) -> tuple[int, Counter[str], Counter[str]]:
        number = int(self.clock() // BUCKET_SECONDS)
        if not self._buckets or self._buckets[-1][0] != number:
            self._buckets.append((number, Counter(), Counter()))
        return self._buckets[-1]

    def record(self, rule: str, key: str, allowed: bool) -> None:
        _, counts, limited = self._bucket()
        counts[f"{rule}|{'allowed' if allowed else 'limited'}"] += 1
        if not allowed:
            limited[f"{rule}|{key}"] += 1
            if len(limited) > self.max_keys:
                for member, _ in limited.most_common()[self.max_keys // 2:]:
                    del limited[member]

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        """(counts by `rule|outcome`, limited by `rule|key`) over the buckets of the last hour."""
        oldest = int(self.clock() // BUCKET_SECONDS) - BUCKETS + 1
        counts: Counter[str] = Counter()
        limited: Counter[str] = Counter()
        for number, bucket_counts, bucket_limited in self._buckets:
            if number >= oldest:
                counts.update(bucket_counts)
                limited.update(bucket_limited)
        return counts, limited


def summarize(counts: Counter[str], limited: Counter[str], top: int = 20) -> dict[str, Any]:
    rules: dict[str, dict[str, int]] = {}
    for member, count in counts.items():
        rule, _, outcome = member.rpartition("|")
        rules.setdefault(rule, {"allowed": 0, "limited": 0})[outcome] = count
    return {
        "window_seconds": BUCKET_SECONDS * BUCKETS,
        "counts": dict(sorted(rules.items())),
        "top_limited": [{"rule": member.split("|", 1)[0], "key": member.split("|", 1)[1], "count": count}
                        for member, count in limited.most_common(top)],
    }
