"""One Prometheus registry per application instance.

A registry per app (rather than prometheus_client's global one) lets tests build several apps in
one process and lets each subsystem register its own families against the registry it is given.
Label sets are bounded by construction: routes are templates, statuses are codes, queries are
statement names chosen in code.
"""

from __future__ import annotations

import asyncio
import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's registry plus the HTTP families every request touches."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.http_requests = Counter(
            "vonix_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "vonix_http_request_duration_seconds",
            "HTTP request latency by method, route template and status code.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http_in_flight = Gauge(
            "vonix_http_requests_in_flight",
            "HTTP requests being served now.",
            registry=self.registry,
        )

        # Why: a task that never ends (a timer per channel, a fill per reconnect) is a leak no other
        # gauge shows until memory does; the soak reads this before and after its clients leave.
        self._loop: asyncio.AbstractEventLoop | None = None
        tasks = Gauge("vonix_asyncio_tasks", "Tasks alive on the server's event loop.", registry=self.registry)
        tasks.set_function(self._count_tasks)
        # The accept loop (server/eager_accept.py): a reconnect wave shows here as waiting, not as
        # the kernel's listen overflows.
        Gauge("vonix_accept_waiting", "Connections accepted and waiting their turn to open.",
              registry=self.registry).set_function(lambda: self._accepting("waiting"))
        Gauge("vonix_accept_opening", "Connections between accept and their first exchange.",
              registry=self.registry).set_function(lambda: self._accepting("opening"))

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop whose tasks `vonix_asyncio_tasks` counts (the app's, set at start-up)."""
        self._loop = loop

    def _accepting(self, what: str) -> float:
        return float(sum(getattr(server, what) for server in getattr(self._loop, "eager_servers", ())))

    def _count_tasks(self) -> float:
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0.0
        # all_tasks copies a WeakSet another thread may be changing (a scrape off the loop): retry.
        for _ in range(3):
            try:
                return float(len(asyncio.all_tasks(loop)))
            except RuntimeError:
                continue
        return float("nan")

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=self.registry)

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> Histogram:
        return Histogram(name, doc, list(labels), buckets=buckets, registry=self.registry)

    def render(self) -> bytes:
        """Prometheus text exposition; merges worker processes when running multi-process."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged, path=directory)
            return generate_latest(merged)
        return generate_latest(self.registry)
