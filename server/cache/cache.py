"""The two-level cache every route and the websocket use: L1 in process, L2 shared (Redis).

Reads go L1 -> L2 -> loader. Concurrent readers of one missing key share one load (single-flight,
per process). Every entry is fresh for `ttl` seconds and may then be served stale for `stale_ttl`
more while one background refresh replaces it. Writers invalidate by key, tag or prefix after they
commit; the invalidation is applied here, in L2 and (through pub/sub) in every replica's L1 before
`invalidate` returns.

Values are kept decoded in L1 (a hit costs a dict lookup) and JSON-encoded in L2; a namespace says
how to turn its values into JSON-able data and back. *Strict* namespaces (who is signed in) are
never served stale and skip L1 whenever other replicas' invalidations might not reach us, so a
revocation takes effect at once even through a Redis outage (they read the database instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from server.cache.backend import Invalidation, LocalOnly, SharedLevel
from server.cache.local import Entry, LocalCache
from server.observability.logging import get_logger

log = get_logger("vonix.cache")

Loader = Callable[[], Awaitable[Any]]
Tags = Iterable[str] | Callable[[Any], Iterable[str]]
LOAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Namespace:
    """A family of keys (`<name>:<id>`) with one lifetime and one encoding."""

    name: str
    ttl: float
    stale_ttl: float = 0.0
    strict: bool = False
    encode: Callable[[Any], Any] = _same  # value -> JSON-able
    decode: Callable[[Any], Any] = _same  # JSON-able -> value
    loader: Callable[[str], Awaitable[Any]] | None = field(default=None, compare=False)  # id -> value, to preload
    tagger: Callable[[str, Any], Iterable[str]] | None = field(default=None, compare=False)  # (id, value) -> tags

    def key(self, ident: str) -> str:
        return f"{self.name}:{ident}"


class Cache:
    def __init__(
        self,
        shared: SharedLevel | None = None,
        *,
        max_entries: int = 10_000,
        ttl: float = 60.0,
        stale_ttl: float = 300.0,
        enabled: bool = True,
        metrics: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.shared: SharedLevel = shared or LocalOnly()
        self.enabled = enabled
        self.default_ttl = ttl
        self.default_stale_ttl = stale_ttl
        self.clock = clock
        self.l1 = LocalCache(max_entries, clock, on_evict=self._evicted)
        self.namespaces: dict[str, Namespace] = {}
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.load_seconds: dict[str, float] = defaultdict(float)
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._epoch = 0  # bumped by every invalidation: a load that saw one in flight is not kept
        self._metrics = _Metrics(metrics, self) if metrics is not None else None

    # --- setup -------------------------------------------------------------------------------
    def namespace(self, name: str, *, ttl: float | None = None, stale_ttl: float | None = None,
                  strict: bool = False, encode: Callable[[Any], Any] | None = None,
                  decode: Callable[[Any], Any] | None = None,
                  loader: Callable[[str], Awaitable[Any]] | None = None,
                  tagger: Callable[[str, Any], Iterable[str]] | None = None) -> Namespace:
        """Declare a namespace; `loader` (by id) enables preloading, `tagger` gives default tags."""
        ns = Namespace(name, self.default_ttl if ttl is None else ttl,
                       0.0 if strict else (self.default_stale_ttl if stale_ttl is None else stale_ttl),
                       strict, encode or _same, decode or _same, loader, tagger)
        self.namespaces[name] = ns
        return ns

    async def start(self) -> None:
        await self.shared.start(self._remote_invalidation, self._resync)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.shared.close()

    async def preload(self, specs: Iterable[str]) -> int:
        """Warm `namespace:id` keys through their namespace's loader; failures are logged, not raised."""
        warmed = 0
        for spec in specs:
            name, _, ident = spec.partition(":")
            ns = self.namespaces.get(name)
            if ns is None or ns.loader is None or not ident:
                log.warning("cache_preload_unknown", key=spec)
                continue
            loader = ns.loader
            try:
                await self.get(ns, ident, lambda loader=loader, ident=ident: loader(ident))  # type: ignore[misc]
                warmed += 1
            except Exception as exc:
                log.warning("cache_preload_failed", key=spec, error=exc.__class__.__name__)
        return warmed

    # --- reads -------------------------------------------------------------------------------
    async def get(self, ns: Namespace, ident: str, loader: Loader, *, tags: Tags | None = None) -> Any:
        """The value of `<namespace>:<ident>`, loading it (once, however many ask) when missing."""
        if not self.enabled:
            return await loader()
        key = ns.key(ident)
        if tags is None:
            tagger = ns.tagger
            tags = (lambda value: tagger(ident, value)) if tagger is not None else ()
        if not ns.strict or self.shared.coherent:
            entry = self.l1.get(key)
            if entry is not None:
                if self.clock() < entry.fresh_until:
                    self._count(ns.name, "l1_hits")
                    return entry.value
                self._count(ns.name, "l1_stale")
                self._refresh(ns, key, loader, tags)
                return entry.value
        self._count(ns.name, "l1_misses")
        task = self._inflight.get(key)
        if task is None or task.done():
            task = self._start(key, self._load(ns, key, loader, tags, serve_stale=True), "cache-load")
        else:
            self._count(ns.name, "joined_loads")
        return await asyncio.shield(task)

    def _count(self, namespace: str, what: str) -> None:
        self.counts[namespace][what] += 1
        if self._metrics is not None:
            self._metrics.count(namespace, what)

    def peek(self, ns: Namespace, ident: str) -> Entry | None:
        """The L1 entry, if any (no load, no stats): for tests and the admin view."""
        return self.l1.get(ns.key(ident))

    def _start(self, key: str, coroutine: Awaitable[Any], kind: str) -> asyncio.Task[Any]:
        """Run one load of `key`; later callers join it until it finishes (single-flight)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        task.set_name(f"{kind}:{key}")
        self._inflight[key] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if self._inflight.get(key) is finished:
                del self._inflight[key]
            error = None if finished.cancelled() else finished.exception()  # retrieved: never "unretrieved"
            if error is not None and kind == "cache-refresh":
                log.warning("cache_refresh_failed", key=key, error=error.__class__.__name__)

        task.add_done_callback(done)
        return task

    def _refresh(self, ns: Namespace, key: str, loader: Loader, tags: Tags) -> None:
        """Replace a stale entry in the background, unless a load of it is already running."""
        running = self._inflight.get(key)
        if running is not None and not running.done():
            return
        self._start(key, self._load(ns, key, loader, tags, serve_stale=False), "cache-refresh")

    async def _load(self, ns: Namespace, key: str, loader: Loader, tags: Tags, *, serve_stale: bool) -> Any:
        epoch = self._epoch
        fetched = await self.shared.fetch(key)
        if fetched.payload is not None:
            data = orjson.loads(fetched.payload)
            now = self.clock()
            fresh_until, stale_until = data["f"], data["s"]
            if now < fresh_until or (serve_stale and now < stale_until):
                value = ns.decode(data["v"])
                if self._epoch == epoch and (not ns.strict or self.shared.coherent):
                    self.l1.put(Entry(key, value, fresh_until, stale_until, tuple(data["t"]), len(fetched.payload)))
                if now < fresh_until:
                    self._count(ns.name, "l2_hits")
                else:
                    self._count(ns.name, "l2_stale")
                    asyncio.get_running_loop().call_soon(self._refresh, ns, key, loader, tags)
                return value
        if self.shared.name != "none":
            self._count(ns.name, "l2_misses")
        started = time.perf_counter()
        try:
            value = await loader()
        except Exception:
            self._count(ns.name, "load_errors")
            if self._metrics is not None:
                self._metrics.load_errors.labels(ns.name).inc()
            raise
        elapsed = time.perf_counter() - started
        self._count(ns.name, "loads")
        self.load_seconds[ns.name] += elapsed
        if self._metrics is not None:
            self._metrics.load.labels(ns.name).observe(elapsed)
        entry_tags = tuple(tags(value) if callable(tags) else tags)
        now = self.clock()
        fresh_until, stale_until = now + ns.ttl, now + ns.ttl + ns.stale_ttl
        payload = orjson.dumps({"v": ns.encode(value), "f": fresh_until, "s": stale_until, "t": entry_tags})
        accepted = await self.shared.store(key, payload, stale_until - now, entry_tags, fetched.token)
        if accepted is not False and self._epoch == epoch and (not ns.strict or self.shared.coherent):
            self.l1.put(Entry(key, value, fresh_until, stale_until, entry_tags, len(payload)))
        return value

    # --- writes ------------------------------------------------------------------------------
    async def invalidate(self, *, keys: Iterable[str] = (), tags: Iterable[str] = (),
                         prefixes: Iterable[str] = ()) -> int:
        """Evict everywhere (this L1, L2, every replica's L1); returns how many L1 entries went here."""
        invalidation = Invalidation(tuple(keys), tuple(tags), tuple(prefixes))
        if not invalidation:
            return 0
        dropped = self._apply(invalidation, "local")
        await self.shared.invalidate(invalidation)
        return dropped

    def _apply(self, invalidation: Invalidation, source: str) -> int:
        self._epoch += 1
        if self._metrics is not None:
            self._metrics.invalidations.labels(source).inc()
        return self.l1.drop(invalidation.keys, invalidation.tags, invalidation.prefixes)

    def _remote_invalidation(self, invalidation: Invalidation) -> None:
        self._apply(invalidation, "remote")

    def _resync(self) -> None:
        """(Re)connected to the other replicas: anything cached meanwhile may have been invalidated."""
        self._epoch += 1
        self.l1.clear("resync")

    def _evicted(self, reason: str, count: int) -> None:
        if self._metrics is not None:
            self._metrics.evictions.labels(reason).inc(count)

    # --- report ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """A one-line health view (for `/api/admin/stats`): size, hit ratios, whether L2 is coherent."""
        totals: Counter[str] = Counter()
        for counts in self.counts.values():
            totals.update(counts)
        l1_total = totals["l1_hits"] + totals["l1_stale"] + totals["l1_misses"]
        l2_total = totals["l2_hits"] + totals["l2_stale"] + totals["l2_misses"]
        return {
            "enabled": self.enabled,
            "entries": len(self.l1),
            "l1_hit_ratio": round((totals["l1_hits"] + totals["l1_stale"]) / l1_total, 4) if l1_total else None,
            "l2_hit_ratio": round((totals["l2_hits"] + totals["l2_stale"]) / l2_total, 4) if l2_total else None,
            "shared": self.shared.name,
            "coherent": self.shared.coherent,
        }

    def report(self, top: int = 5) -> dict[str, Any]:
        per_namespace: dict[str, dict[str, Any]] = {}
        sizes: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for entry in self.l1:
            sizes[entry.key.partition(":")[0]].append((entry.size, entry.key))
        for name in sorted(set(self.namespaces) | set(self.counts) | set(sizes)):
            stats = self.counts.get(name, Counter())
            entries = sizes.get(name, [])
            loads = stats.get("loads", 0)
            per_namespace[name] = {
                **{k: stats.get(k, 0) for k in ("l1_hits", "l1_stale", "l1_misses", "l2_hits", "l2_stale",
                                                 "l2_misses", "loads", "load_errors", "joined_loads")},
                "stale_served": stats.get("l1_stale", 0) + stats.get("l2_stale", 0),
                "load_seconds_avg": round(self.load_seconds.get(name, 0.0) / loads, 6) if loads else None,
                "entries": len(entries),
                "bytes": sum(size for size, _ in entries),
                "biggest_keys": [{"key": key, "bytes": size} for size, key in sorted(entries, reverse=True)[:top]],
            }
        return {
            "enabled": self.enabled,
            "entries": len(self.l1),
            "max_entries": self.l1.max_entries,
            "evictions": dict(self.l1.evictions),
            "shared": self.shared.status(),
            "namespaces": per_namespace,
        }


_LABELS = {
    "l1_hits": ("l1", "hit"), "l1_stale": ("l1", "stale"), "l1_misses": ("l1", "miss"),
    "l2_hits": ("l2", "hit"), "l2_stale": ("l2", "stale"), "l2_misses": ("l2", "miss"),
}


class _Metrics:
    """Prometheus families with bounded labels: namespace (named in code), level, result, reason."""

    def __init__(self, metrics: Any, cache: Cache) -> None:
        self.requests = metrics.counter("vonix_cache_requests_total",
                                        "Cache lookups by namespace, level (l1, l2) and result (hit, stale, miss).",
                                        ("namespace", "level", "result"))
        self.load = metrics.histogram("vonix_cache_load_seconds", "Time the loader took for a missing entry.",
                                      ("namespace",), buckets=LOAD_BUCKETS)
        self.load_errors = metrics.counter("vonix_cache_load_errors_total", "Loader calls that raised.",
                                           ("namespace",))
        self.evictions = metrics.counter("vonix_cache_evictions_total",
                                         "L1 entries removed, by reason (size, expired, invalidated, resync).",
                                         ("reason",))
        self.invalidations = metrics.counter("vonix_cache_invalidations_total",
                                             "Invalidations applied to L1, by origin (local or remote).", ("source",))
        metrics.gauge("vonix_cache_entries", "Entries in this replica's L1.").set_function(lambda: len(cache.l1))
        self._children: dict[tuple[str, str], Any] = {}

    def count(self, namespace: str, what: str) -> None:
        child = self._children.get((namespace, what))
        if child is None:
            labels = _LABELS.get(what)
            if labels is None:
                return
            child = self._children[(namespace, what)] = self.requests.labels(namespace, *labels)
        child.inc()
