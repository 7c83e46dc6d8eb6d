"""Multi-level cache: L1 in process, L2 in Redis (scaled mode), coherent across replicas."""

from __future__ import annotations

from typing import Any

from server.cache.backend import Invalidation, LocalOnly, SharedLevel
from server.cache.cache import Cache, Namespace


def create_cache(settings: Any, redis: Any = None, metrics: Any = None) -> Cache:
    """L1 only in embedded mode; L1 + Redis (with pub/sub invalidation) when Redis is configured."""
    shared: SharedLevel = LocalOnly()
    if redis is not None:
        from server.cache.redis import RedisShared

        shared = RedisShared(redis, metrics=metrics)
    return Cache(shared, max_entries=settings.cache_max_entries, ttl=settings.cache_ttl,
                 stale_ttl=settings.cache_stale_ttl, enabled=settings.cache_enabled, metrics=metrics)


__all__ = ["Cache", "Invalidation", "LocalOnly", "Namespace", "SharedLevel", "create_cache"]
