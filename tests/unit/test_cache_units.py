"""The cache's logic with a fake clock and the in-process shared level (embedded mode)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.cache import Cache
from server.cache.backend import Fetched, Invalidation, LocalOnly
from server.cache.local import Entry, LocalCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingLoader:
    def __init__(self, value: Any = "v", delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.value if not callable(self.value) else self.value(self.calls)


def test_l1_is_bounded_lru_with_deadlines_and_tags() -> None:
    clock = Clock()
    l1 = LocalCache(3, clock)
    for key in "abc":
        l1.put(Entry(key, key.upper(), clock.now + 10, clock.now + 20, (f"tag:{key}", "all")))
    assert l1.get("a") is not None  # a is now the most recently used
    l1.put(Entry("d", "D", clock.now + 10, clock.now + 20, ("all",)))
    assert l1.get("b") is None and l1.get("a") is not None and len(l1) == 3
    assert l1.evictions["size"] == 1
    clock.now += 15  # stale but servable
    assert l1.get("c") is not None
    clock.now += 10  # past the stale deadline: gone
    assert l1.get("c") is None and l1.evictions["expired"] == 1
    l1.put(Entry("e:1", 1, clock.now + 10, clock.now + 20, ("t1",)))
    l1.put(Entry("e:2", 2, clock.now + 10, clock.now + 20, ("t1", "t2")))
    l1.put(Entry("f:1", 3, clock.now + 10, clock.now + 20))
    assert l1.drop(tags=["t2"]) == 1 and l1.get("e:1") is not None
    assert l1.drop(prefixes=["e:"]) == 1 and l1.get("e:1") is None
    assert l1.drop(keys=["f:1", "missing"]) == 1
    assert l1._tags == {}  # no tag index entries left behind


async def test_cold_key_loads_once_for_many_concurrent_readers() -> None:
    cache = Cache(LocalOnly())
    ns = cache.namespace("user", ttl=60)
    loader = CountingLoader({"id": 1}, delay=0.05)
    results = await asyncio.gather(*(cache.get(ns, "1", loader) for _ in range(100)))
    assert loader.calls == 1
    assert all(r == {"id": 1} for r in results)
    assert cache.counts["user"]["joined_loads"] == 99
    assert await cache.get(ns, "1", loader) == {"id": 1} and loader.calls == 1
    assert cache.counts["user"]["l1_hits"] == 1


async def test_stale_entry_is_served_at_once_and_refreshed_once_in_background() -> None:
    clock = Clock()
    cache = Cache(LocalOnly(), clock=clock)
    ns = cache.namespace("page", ttl=10, stale_ttl=30)
    loader = CountingLoader(lambda n: f"v{n}", delay=0.05)
    assert await cache.get(ns, "x", loader) == "v1"
    clock.now += 11  # stale
    started = asyncio.get_running_loop().time()
    answers = [await cache.get(ns, "x", loader) for _ in range(20)]
    assert asyncio.get_running_loop().time() - started < 0.04, "stale hits must not wait for the refresh"
    assert answers == ["v1"] * 20
    await asyncio.sleep(0.1)
    assert loader.calls == 2, "exactly one background refresh"
    assert await cache.get(ns, "x", loader) == "v2"
    assert cache.counts["page"]["l1_stale"] == 20
    clock.now += 100  # past fresh + stale: a plain miss that waits for the loader
    assert await cache.get(ns, "x", loader) == "v3"


async def test_loader_errors_reach_every_waiter_and_are_not_cached() -> None:
    cache = Cache(LocalOnly())
    ns = cache.namespace("boom")
    calls = 0

    async def failing() -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise RuntimeError("db down")

    results = await asyncio.gather(*(cache.get(ns, "k", failing) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, RuntimeError) for r in results)
    with pytest.raises(RuntimeError):
        await cache.get(ns, "k", failing)
    assert calls == 2 and cache.peek(ns, "k") is None


async def test_invalidation_by_key_tag_and_prefix() -> None:
    cache = Cache(LocalOnly())
    users = cache.namespace("user")
    rooms = cache.namespace("room")
    await cache.get(users, "1", CountingLoader("u1"), tags=["user:1"])
    await cache.get(users, "2", CountingLoader("u2"), tags=lambda value: [f"user:{value[1:]}"])
    await cache.get(rooms, "a", CountingLoader("ra"), tags=["user:1"])
    assert await cache.invalidate(tags=["user:1"]) == 2
    assert cache.peek(users, "1") is None and cache.peek(rooms, "a") is None and cache.peek(users, "2") is not None
    assert await cache.invalidate(tags=["user:2"]) == 1
    await cache.get(rooms, "b", CountingLoader("rb"))
    assert await cache.invalidate(prefixes=["room:"]) == 1
    await cache.get(rooms, "c", CountingLoader("rc"))
    assert await cache.invalidate(keys=["room:c"]) == 1
    assert len(cache.l1) == 0


async def test_a_load_that_raced_an_invalidation_is_not_kept() -> None:
    cache = Cache(LocalOnly())
    ns = cache.namespace("session")
    loader = CountingLoader("before revocation", delay=0.05)
    pending = asyncio.create_task(cache.get(ns, "s1", loader, tags=["session:s1"]))
    await asyncio.sleep(0.01)
    await cache.invalidate(tags=["session:s1"])
    assert await pending == "before revocation"  # the caller that asked first gets its answer...
    assert cache.peek(ns, "s1") is None  # ...but it is not cached past the invalidation


class Incoherent(LocalOnly):
    """A shared level whose invalidation channel is down."""

    @property
    def coherent(self) -> bool:
        return False

    async def fetch(self, key: str) -> Fetched:
        return Fetched(None, None)


async def test_strict_namespaces_never_serve_stale_or_untrusted_memory() -> None:
    clock = Clock()
    cache = Cache(LocalOnly(), clock=clock, stale_ttl=300)
    ns = cache.namespace("principal", ttl=10, strict=True)
    assert ns.stale_ttl == 0
    loader = CountingLoader(lambda n: n)
    assert await cache.get(ns, "s", loader) == 1
    clock.now += 11
    assert await cache.get(ns, "s", loader) == 2, "expired strict entries are reloaded, not served stale"

    blind = Cache(Incoherent(), clock=clock)
    strict = blind.namespace("principal", ttl=10, strict=True)
    relaxed = blind.namespace("channel", ttl=10)
    strict_loader, relaxed_loader = CountingLoader(), CountingLoader()
    for _ in range(3):
        await blind.get(strict, "s", strict_loader)
        await blind.get(relaxed, "c", relaxed_loader)
    assert strict_loader.calls == 3, "strict values skip L1 while invalidations may be missed"
    assert relaxed_loader.calls == 1


async def test_resync_flushes_l1_and_remote_invalidations_apply() -> None:
    cache = Cache(LocalOnly())
    ns = cache.namespace("channel")
    await cache.get(ns, "room:a", CountingLoader(1), tags=["channel:room:a"])
    await cache.get(ns, "room:b", CountingLoader(2), tags=["channel:room:b"])
    cache._remote_invalidation(Invalidation(tags=("channel:room:a",)))
    assert cache.peek(ns, "room:a") is None and cache.peek(ns, "room:b") is not None
    cache._resync()
    assert len(cache.l1) == 0 and cache.l1.evictions["resync"] == 1


async def test_preload_uses_namespace_loader_and_tagger() -> None:
    cache = Cache(LocalOnly())
    loaded: list[str] = []

    async def load(ident: str) -> str:
        loaded.append(ident)
        return ident.upper()

    ns = cache.namespace("channel", loader=load, tagger=lambda ident, _v: [f"channel:{ident}"])
    assert await cache.preload(["channel:room:general", "nope:x", "channel:"]) == 1
    assert loaded == ["room:general"]
    entry = cache.peek(ns, "room:general")
    assert entry is not None and entry.value == "ROOM:GENERAL" and entry.tags == ("channel:room:general",)
    report = cache.report()
    assert report["namespaces"]["channel"]["entries"] == 1
    assert report["namespaces"]["channel"]["biggest_keys"][0]["key"] == "channel:room:general"


async def test_disabled_cache_reads_through() -> None:
    cache = Cache(LocalOnly(), enabled=False)
    ns = cache.namespace("x")
    loader = CountingLoader()
    for _ in range(3):
        await cache.get(ns, "k", loader)
    assert loader.calls == 3 and len(cache.l1) == 0


async def test_close_cancels_background_refreshes() -> None:
    clock = Clock()
    cache = Cache(LocalOnly(), clock=clock)
    ns = cache.namespace("slow", ttl=1, stale_ttl=60)
    await cache.get(ns, "k", CountingLoader("old"))
    clock.now += 2
    assert await cache.get(ns, "k", CountingLoader("new", delay=5)) == "old"
    assert cache._tasks
    await cache.close()
    assert not cache._tasks


async def test_stats_summary_for_the_admin_overview() -> None:
    cache = Cache(LocalOnly())
    ns = cache.namespace("x")
    assert cache.stats()["l1_hit_ratio"] is None
    await cache.get(ns, "k", CountingLoader())
    await cache.get(ns, "k", CountingLoader())
    assert cache.stats() == {"enabled": True, "entries": 1, "l1_hit_ratio": 0.5, "l2_hit_ratio": None,
                             "shared": "none", "coherent": True}
