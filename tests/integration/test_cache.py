"""The two-level cache against real Redis (and embedded), through the app and directly.

Acceptance: (1) a tag invalidation on replica A evicts B's L1 copy within 100 ms; (2) 100
concurrent reads of a cold key call the loader once; (3) a stale entry is served at once while one
background refresh replaces it; (4) with Redis stopped, reads answer from L1 and writes and
invalidations do not raise, and it all recovers when Redis returns. Plus: a session revoked on A
is refused on B immediately after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.cache import Cache
from server.cache.backend import LocalOnly
from server.cache.redis import RedisShared
from server.infra.redis import RedisClients
from server.observability.metrics import Metrics
from tests.conftest import SCALED_AND_CLUSTER, THREE_MODES, flushed_cluster, make_settings
from tests.support.accounts import bearer, login, make_admin, register
from tests.support.appserver import AppServer
from tests.support.contract import assert_conforms
from tests.support.services import RedisServer


async def wait_for(condition: Any, timeout: float = 5.0, step: float = 0.001) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("condition not met")
        await asyncio.sleep(step)
    return time.perf_counter() - started


@pytest.fixture
async def replicas(scaled_backend: dict[str, Any]) -> AsyncIterator[tuple[AppServer, AppServer]]:
    settings = make_settings(**scaled_backend)
    async with AppServer(settings) as a, AppServer(settings) as b:
        yield a, b


@SCALED_AND_CLUSTER
async def test_tag_invalidation_on_a_evicts_b_l1_within_100ms(replicas: tuple[AppServer, AppServer]) -> None:
    a, b = replicas
    cache_b = b.resources.cache
    channels = cache_b.namespaces["channel"]
    async with a.client() as http:
        await register(http, "Cache_Admin")
        await make_admin(a, "cache_admin")
        admin = bearer((await login(http, "cache_admin"))["access_token"])
        assert cache_b.peek(channels, "room:general") is not None, "preloaded at start"
        took = []
        for _ in range(3):
            started = time.perf_counter()
            response = await http.delete("/api/admin/cache", params={"tag": "channel:room:general"}, headers=admin)
            assert response.status_code == 200, response.text
            await wait_for(lambda: cache_b.peek(channels, "room:general") is None, timeout=1.0)
            took.append(time.perf_counter() - started)
            await assert_conforms(http, response, "DELETE", "/api/admin/cache")  # after the timing
            await cache_b.get(channels, "room:general", lambda: b.resources.hooks.channels._load_meta("room:general"))
            assert cache_b.peek(channels, "room:general") is not None
        # Evicted on every round (within wait_for's second, where a TTL would take minutes) and
        # within 100 ms, request included, at least once: the best of three, because on a machine
        # shared with other tests one HTTP round trip alone can take longer now and then.
        assert min(took) < 0.1, [f"{t * 1000:.0f} ms" for t in took]
    async with b.client() as http_b:
        report = await assert_conforms(http_b, await http_b.get("/api/admin/cache", headers=admin),
                                       "GET", "/api/admin/cache")  # with the Redis level's state
    assert report["shared"]["coherent"] is True
    assert report["namespaces"]["channel"]["l1_misses"] >= 3


@SCALED_AND_CLUSTER
async def test_session_revoked_on_a_is_refused_on_b_at_once(replicas: tuple[AppServer, AppServer]) -> None:
    a, b = replicas
    async with a.client() as on_a, b.client() as on_b:
        await register(on_a, "Revoked_Rita")
        token = (await login(on_a, "revoked_rita"))["access_token"]
        for _ in range(3):  # cached on B (L1 and L2)
            assert (await on_b.get("/api/auth/me", headers=bearer(token))).status_code == 200
        principals = b.resources.cache.namespaces["principal"]
        assert b.resources.cache.counts["principal"]["l1_hits"] >= 2
        assert (await on_a.post("/api/auth/logout", headers=bearer(token))).status_code == 204
        refused = await on_b.get("/api/auth/me", headers=bearer(token))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
        assert not any(e.key.startswith(principals.name) and e.value for e in b.resources.cache.l1)


async def flushed_clients(request: pytest.FixtureRequest, mode: str) -> RedisClients:
    """Started clients on the session's single Redis ("scaled") or Redis Cluster ("cluster"), emptied."""
    if mode == "cluster":
        url = flushed_cluster(request.getfixturevalue("redis_cluster_service"))
    else:
        url = request.getfixturevalue("redis_service").url
    clients = RedisClients(url, Metrics(), timeout=0.5, health_interval=0.2, cluster=mode == "cluster")
    await clients.commands.flushall()
    await clients.start()
    return clients


@pytest.fixture(params=["scaled", "cluster"])
async def redis_clients(request: pytest.FixtureRequest) -> AsyncIterator[RedisClients]:
    clients = await flushed_clients(request, request.param)
    yield clients
    await clients.close()


async def shared_cache(clients: RedisClients | None, **options: Any) -> Cache:
    cache = Cache(RedisShared(clients) if clients is not None else LocalOnly(), **options)
    await cache.start()
    return cache


@pytest.fixture(params=["embedded", "scaled", "cluster"])
async def shared_clients(request: pytest.FixtureRequest) -> AsyncIterator[RedisClients | None]:
    """None (embedded: nothing shared) or Redis clients on the session's Redis or cluster, flushed."""
    if request.param == "embedded":
        yield None
        return
    clients = await flushed_clients(request, request.param)
    yield clients
    await clients.close()


async def test_100_concurrent_cold_reads_call_the_loader_once(shared_clients: RedisClients | None) -> None:
    clients = shared_clients
    mode = "embedded" if clients is None else "scaled"
    first, second = await shared_cache(clients), await shared_cache(clients)
    calls = 0

    async def loader() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"id": 42, "name": "Steve"}

    try:
        users = first.namespace("user")
        values = await asyncio.gather(*(first.get(users, "42", loader, tags=["user:42"]) for _ in range(100)))
        assert calls == 1 and all(v == {"id": 42, "name": "Steve"} for v in values)
        other = second.namespace("user")
        assert await second.get(other, "42", loader) == {"id": 42, "name": "Steve"}
        if mode == "scaled":
            assert calls == 1 and second.counts["user"]["l2_hits"] == 1, "the other replica reads L2"
        else:
            assert calls == 2, "embedded replicas share nothing"
    finally:
        await first.close()
        await second.close()


async def test_stale_entry_served_at_once_while_one_refresh_replaces_it(redis_clients: RedisClients) -> None:
    a, b = await shared_cache(redis_clients), await shared_cache(redis_clients)
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return f"version {calls}"

    try:
        pages = a.namespace("page", ttl=0.3, stale_ttl=30)
        assert await a.get(pages, "p1", loader) == "version 1"
        await asyncio.sleep(0.35)
        started = time.perf_counter()
        stale = await asyncio.gather(*(a.get(pages, "p1", loader) for _ in range(50)))
        assert time.perf_counter() - started < 0.05, "stale hits answer without waiting for the loader"
        assert set(stale) == {"version 1"}
        await wait_for(lambda: a.peek(pages, "p1").value == "version 2", timeout=2)
        await asyncio.sleep(0.05)
        assert calls == 2, "a single background refresh"
        assert await a.get(pages, "p1", loader) == "version 2"
        assert await b.get(b.namespace("page", ttl=0.3, stale_ttl=30), "p1", loader) == "version 2", "via L2"
        assert calls == 2
    finally:
        await a.close()
        await b.close()


async def test_redis_outage_keeps_l1_and_recovers_by_itself() -> None:
    server = RedisServer().start()
    clients_a = RedisClients(server.url, Metrics(), timeout=0.3, health_interval=0.1)
    clients_b = RedisClients(server.url, Metrics(), timeout=0.3, health_interval=0.1)
    await clients_a.start()
    await clients_b.start()
    a, b = await shared_cache(clients_a), await shared_cache(clients_b)
    loads: list[str] = []

    def loader(value: str) -> Any:
        async def load() -> str:
            loads.append(value)
            return value
        return load

    try:
        rooms_a, rooms_b = a.namespace("channel"), b.namespace("channel")
        principals_a = a.namespace("principal", strict=True)
        assert await a.get(rooms_a, "room:x", loader("x1"), tags=["channel:room:x"]) == "x1"
        assert await b.get(rooms_b, "room:x", loader("x1b"), tags=["channel:room:x"]) == "x1"  # from L2
        await a.get(principals_a, "s1", loader("alice"), tags=["session:s1"])
        assert loads == ["x1", "alice"]

        server.stop()
        await wait_for(lambda: not a.shared.coherent and not b.shared.coherent, timeout=5, step=0.02)
        started = time.perf_counter()
        assert await a.get(rooms_a, "room:x", loader("never")) == "x1", "served from L1"
        assert await b.get(rooms_b, "room:x", loader("never")) == "x1"
        assert await a.get(rooms_a, "room:new", loader("n1")) == "n1", "misses load without Redis"
        assert await a.get(rooms_a, "room:new", loader("never")) == "n1", "and are kept in L1"
        await a.invalidate(tags=["channel:room:x"])  # does not raise; queued for Redis
        assert await a.get(rooms_a, "room:x", loader("x2")) == "x2"
        assert await a.get(principals_a, "s1", loader("alice again")) == "alice again", "strict: not from L1"
        assert time.perf_counter() - started < 1.0, "nothing waits on the dead Redis"
        assert "never" not in loads and a.shared.status()["pending_invalidations"] == 1

        server.start()  # the same port, empty
        await wait_for(lambda: a.shared.coherent and b.shared.coherent, timeout=10, step=0.02)
        assert len(b.l1) == 0, "B flushed what it may have missed"
        assert a.shared.status()["pending_invalidations"] == 0, "A replayed its invalidation"
        assert await a.get(rooms_a, "room:y", loader("y1"), tags=["channel:room:y"]) == "y1"
        assert await b.get(rooms_b, "room:y", loader("never")) == "y1", "L2 works again"
        started = time.perf_counter()
        await a.invalidate(tags=["channel:room:y"])
        await wait_for(lambda: b.peek(rooms_b, "room:y") is None, timeout=1)
        assert time.perf_counter() - started < 0.1, "cross-replica invalidation is back"
        assert "never" not in loads
    finally:
        await a.close()
        await b.close()
        await clients_a.close()
        await clients_b.close()
        server.cleanup()


@THREE_MODES
async def test_channel_membership_is_cached_and_invalidated_by_writers(app_server: AppServer) -> None:
    cache = app_server.resources.cache
    async with app_server.client() as http:
        await register(http, "Owner_Olga")
        await register(http, "Guest_Gus")
        owner = bearer((await login(http, "owner_olga"))["access_token"])
        guest = bearer((await login(http, "guest_gus"))["access_token"])
        created = await http.post("/api/rooms", json={"name": "secret", "private": True}, headers=owner)
        assert created.status_code == 201
        history = "/api/channels/room:secret/messages"
        assert (await http.get(history, headers=guest)).status_code == 403
        assert (await http.get(history, headers=guest)).status_code == 403  # the "not a member" answer is cached
        invited = await http.post("/api/rooms/secret/invite", json={"username": "Guest_Gus"}, headers=owner)
        assert invited.status_code == 200
        assert (await http.get(history, headers=guest)).status_code == 200, "invite invalidated the membership"
        assert (await http.post("/api/rooms/secret/leave", headers=guest)).status_code == 204
        assert (await http.get(history, headers=guest)).status_code == 403, "leaving invalidated it again"
    assert cache.counts["member"]["l1_hits"] >= 1


@THREE_MODES
async def test_closed_history_pages_are_cached(app_server: AppServer) -> None:
    cache = app_server.resources.cache
    async with app_server.client() as http:
        await register(http, "Pager_Pam")
        token = bearer((await login(http, "pager_pam"))["access_token"])
        for n in range(5):
            posted = await http.post("/api/channels/room:general/messages", json={"data": {"text": f"m{n}"}},
                                     headers=token)
            assert posted.status_code == 201
        newest = (await http.get("/api/channels/room:general/messages?limit=2", headers=token)).json()
        for _ in range(3):
            page = (await http.get(f"/api/channels/room:general/messages?before={newest['next_before']}&limit=2",
                                   headers=token)).json()
            assert [m["data"]["text"] for m in page["messages"]] == ["m1", "m2"]
            forward = (await http.get("/api/channels/room:general/messages?since=0&limit=2", headers=token)).json()
            assert [m["data"]["text"] for m in forward["messages"]] == ["m0", "m1"]
            assert page["offset"] == forward["offset"] == 5
    assert cache.counts["history"]["loads"] == 2 and cache.counts["history"]["l1_hits"] == 4


@THREE_MODES
async def test_role_change_reaches_a_cached_principal(app_server: AppServer) -> None:
    async with app_server.client() as http:
        await register(http, "Promoted_Pia")
        token = bearer((await login(http, "promoted_pia"))["access_token"])
        assert (await http.get("/api/admin/db", headers=token)).status_code == 403
        assert (await http.get("/api/admin/db", headers=token)).status_code == 403  # cached as a member
        await make_admin(app_server, "promoted_pia")  # writes the role, then AuthService.user_changed
        assert (await http.get("/api/admin/db", headers=token)).status_code == 200
