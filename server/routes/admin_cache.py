"""`/api/admin/cache` and `/api/admin/ratelimits`: what the cache and the limiter are doing.

`GET /api/admin/cache`: this replica's L1 (entries, evictions, per-namespace hits and misses by
level, stale serves, loads and their mean time, the biggest keys) and the shared level's state.
`DELETE /api/admin/cache?tag=user:42&prefix=channel:&key=principal:abc`: invalidate on every
replica (audited). `GET /api/admin/ratelimits`: the rules, allowed/limited counts per rule and the
most limited keys over the last hour (across replicas in scaled mode).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from server.auth import audit
from server.auth.principal import principal_of, requires
from server.errors import ServiceUnavailable, ValidationFailed
from server.jsonio import JSONResponse
from server.openapi import api
from server.ratelimit.client_ip import TrustedProxies, client_ip
from server.resources import resources_of

MAX_TARGETS = 100


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
    api("/api/admin/cache", cache_report, ["GET"]),
    api("/api/admin/cache", cache_invalidate, ["DELETE"]),
    api("/api/admin/ratelimits", ratelimit_report, ["GET"]),
]
