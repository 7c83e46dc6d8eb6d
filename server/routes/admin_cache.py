"""`/api/admin/cache` and `/api/admin/ratelimits`: what the cache and the limiter are doing.

`GET /api/admin/cache`: this replica's L1 (entries, evictions, per-namespace hits and misses by
level, stale serves, loads and their mean time, the biggest keys) and the shared level's state.
`DELETE /api/admin/cache?tag=user:42&prefix=channel:&key=principal:abc`: invalidate on every
replica (audited). `GET /api/admin/ratelimits`: the rules, allowed/limited counts per rule and the
most limited keys over the last hour (across replicas in scaled mode).
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from server.auth import audit
from server.auth.principal import principal_of, requires
from server.errors import ServiceUnavailable, ValidationFailed
from server.jsonio import JSONResponse
from server.openapi import api
from server.openapi.responses import Closed, Open
from server.ratelimit.client_ip import TrustedProxies, client_ip
from server.resources import resources_of

MAX_TARGETS = 100


# --- responses (described for the OpenAPI document; `Cache.report` and `RateLimiter.report` build them)
class BiggestKey(Closed):
    key: str
    bytes: int


class CacheNamespace(Closed):
    """One namespace's lookups by level and result, its loads and its share of this replica's L1."""

    l1_hits: int
    l1_stale: int
    l1_misses: int
    l2_hits: int
    l2_stale: int
    l2_misses: int
    loads: int
    load_errors: int
    joined_loads: int
    stale_served: int
    load_seconds_avg: float | None  # null until something was loaded
    entries: int
    bytes: int
    biggest_keys: list[BiggestKey]


class SharedLevel(Open):
    """The shared level (L2): `none` in embedded mode; Redis adds its subscription and health."""

    level: Literal["none", "redis"]
    coherent: bool


class CacheReport(Open):
    """This replica's L1 and the shared level; `evictions` and `namespaces` are maps by name."""

    enabled: bool
    entries: int
    max_entries: int
    evictions: dict[str, int]  # reason (size, expired, invalidated, resync) -> count
    shared: SharedLevel
    namespaces: dict[str, CacheNamespace]


class InvalidationTargets(Closed):
    tags: list[str]
    prefixes: list[str]
    keys: list[str]


class CacheInvalidated(Closed):
    """What was invalidated everywhere, and how many L1 entries this replica dropped."""

    invalidated: InvalidationTargets
    local_entries_dropped: int


class LimiterStore(Open):
    """Where counts live: `memory` (this process) or `redis` (shared, with its health)."""

    store: Literal["memory", "redis"]


class LimitRule(Closed):
    """A configured rule (`limit`: `N/S`, `N/S+burst` or the lockout's `N/S`)."""

    rule: str
    algorithm: str
    limit: str
    on_redis_outage: str


class RuleCounts(Closed):
    allowed: int
    limited: int


class LimitedKey(Closed):
    rule: str
    key: str
    count: int


class RateLimitReport(Open):
    """The rules and, over `window_seconds`, decisions per rule and the most limited keys."""

    enabled: bool
    store: LimiterStore
    rules: list[LimitRule]
    window_seconds: int
    counts: dict[str, RuleCounts]  # rule -> decisions
    top_limited: list[LimitedKey]


@requires("admin.cache.manage")
async def cache_report(request: Request) -> Response:
    cache = resources_of(request).cache
    if cache is None:
        raise ServiceUnavailable("The cache is not running.")
    return JSONResponse(cache.report())


@requires("admin.cache.manage")
async def cache_invalidate(request: Request) -> Response:
    resources = resources_of(request)
    if resources.cache is None:
        raise ServiceUnavailable("The cache is not running.")
    query = request.query_params
    tags, prefixes, keys = query.getlist("tag"), query.getlist("prefix"), query.getlist("key")
    targets = [*tags, *prefixes, *keys]
    if not targets or len(targets) > MAX_TARGETS or any(not t or len(t) > 300 for t in targets):
        raise ValidationFailed(details=[{"field": "tag", "code": "missing",
                                         "message": f"give 1 to {MAX_TARGETS} tag=, prefix= or key= parameters"}])
    dropped = await resources.cache.invalidate(keys=keys, tags=tags, prefixes=prefixes)
    principal = principal_of(request)
    await audit.record(resources.db, "cache.invalidated", actor_id=principal.user_id, target_type="cache",
                       ip=client_ip(request.scope, TrustedProxies(resources.settings.trusted_proxies)),
                       tags=tags, prefixes=prefixes, keys=keys)
    return JSONResponse({"invalidated": {"tags": tags, "prefixes": prefixes, "keys": keys},
                         "local_entries_dropped": dropped})


@requires("admin.ratelimits.read")
async def ratelimit_report(request: Request) -> Response:
    limiter = resources_of(request).limiter
    if limiter is None:
        raise ServiceUnavailable("The rate limiter is not running.")
    return JSONResponse(await limiter.report())


routes = [
    api("/api/admin/cache", cache_report, ["GET"], ok={200: CacheReport}),
    api("/api/admin/cache", cache_invalidate, ["DELETE"], ok={200: CacheInvalidated}),
    api("/api/admin/ratelimits", ratelimit_report, ["GET"], ok={200: RateLimitReport}),
]
