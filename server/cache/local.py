"""L1, the in-process level: an LRU bounded by entry count, with per-entry deadlines and tags.

Every entry has two deadlines: `fresh_until` (served as is) and `stale_until` (served while one
background refresh runs). Past `stale_until` an entry is gone; it is dropped when next touched or
when the size bound pushes it out, whichever comes first. A tag index makes invalidation by tag
O(entries with the tag); invalidation by prefix scans the keys (an admin operation, not hot).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Entry:
    __slots__ = ("fresh_until", "key", "size", "stale_until", "tags", "value")

    def __init__(self, key: str, value: Any, fresh_until: float, stale_until: float,
                 tags: tuple[str, ...] = (), size: int = 0) -> None:
        self.key = key
        self.value = value
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.tags = tags
        self.size = size


class LocalCache:
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.time,
                 on_evict: Callable[[str, int], None] | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.clock = clock
        self.evictions: Counter[str] = Counter()
        self._on_evict = on_evict
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._tags: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, key: str) -> Entry | None:
        """The entry while it may still be served (fresh or stale), marked most recently used."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.stale_until <= self.clock():
            self._remove(key)
            self._count("expired", 1)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, entry: Entry) -> None:
        if entry.key in self._entries:
            self._remove(entry.key)
        self._entries[entry.key] = entry
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(entry.key)
        overflow = len(self._entries) - self.max_entries
        for _ in range(max(0, overflow)):
            oldest = next(iter(self._entries))
            self._remove(oldest)
        if overflow > 0:
            self._count("size", overflow)

    def drop(self, keys: Iterable[str] = (), tags: Iterable[str] = (), prefixes: Iterable[str] = ()) -> int:
        """Remove entries by exact key, by tag and by key prefix; returns how many went."""
        doomed: set[str] = {k for k in keys if k in self._entries}
        for tag in tags:
            doomed.update(self._tags.get(tag, ()))
        prefixes = tuple(prefixes)
        if prefixes:
            doomed.update(k for k in self._entries if k.startswith(prefixes))
        for key in doomed:
            self._remove(key)
        self._count("invalidated", len(doomed))
        return len(doomed)

    def clear(self, reason: str = "flush") -> int:
        count = len(self._entries)
        self._entries.clear()
        self._tags.clear()
        self._count(reason, count)
        return count

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        for tag in entry.tags:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]

    def _count(self, reason: str, count: int) -> None:
        if count:
            self.evictions[reason] += count
            if self._on_evict is not None:
                self._on_evict(reason, count)
