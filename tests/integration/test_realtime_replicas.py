"""Realtime across replicas: presence, SIGKILL, SIGTERM drain, Redis outage, caps, revocation."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SCALED_AND_CLUSTER, make_settings
from tests.support.accounts import PASSWORD, bearer, register
from tests.support.appserver import AppServer
from tests.support.replica import Replica
from tests.support.services import RedisServer
from tests.support.wsclient import WsClient

pytestmark = pytest.mark.slow


async def login_token(base_url: str, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post("/api/auth/login", json={"login": name.lower(), "password": PASSWORD})
        assert response.status_code == 200, response.text
        return response.json()


async def make_users(base_url: str, *names: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for name in names:
            await register(client, name)
    return {name: (await login_token(base_url, name))["access_token"] for name in names}


def assert_no_message_queued(*clients: WsClient) -> None:
    """Nothing but non-message pushes left in the clients' queues (no second copy arrived)."""
    for client in clients:
        while not client.pushes.empty():
            push = client.pushes.get_nowait()
            assert push.get("op") != "message", push


@pytest.fixture
async def pair(scaled_backend: dict[str, Any]) -> Any:
    settings = make_settings(WS_PUBLISH_BURST=500, WS_PUBLISH_RATE=500, WS_MAX_CONNECTIONS_PER_USER=2,
                             **scaled_backend)
    async with AppServer(settings) as a, AppServer(settings) as b:
        yield a, b


@SCALED_AND_CLUSTER
async def test_presence_across_replicas_two_tabs_leave_once(pair: tuple[AppServer, AppServer]) -> None:
    a, b = pair
    tokens = await make_users(a.base_url, "Watcher", "Tabby")
    watcher = await WsClient.connect(a.base_url, tokens["Watcher"])
    await watcher.request("subscribe", channel="room:general")
    tab1 = await WsClient.connect(b.base_url, tokens["Tabby"])
    tab2 = await WsClient.connect(a.base_url, tokens["Tabby"])
    await tab1.request("subscribe", channel="room:general")
    joined = await watcher.push_about("join", "Tabby")
    assert joined["channel"] == "room:general"
    await tab2.request("subscribe", channel="room:general")
    users = await watcher.request("presence", channel="room:general")
    assert sorted(u["username"] for u in users["users"]) == ["Tabby", "Watcher"]
    await tab1.close()
    await asyncio.sleep(0.6)  # longer than a presence diff interval (200 ms)
    assert not any(p.get("leaves") for p in list(watcher.pushes._queue))  # type: ignore[attr-defined]
    await tab2.close()
    left = await watcher.push_about("leave", "Tabby")
    assert left["channel"] == "room:general"
    await asyncio.sleep(0.6)
    assert not any(p.get("leaves") for p in list(watcher.pushes._queue))  # type: ignore[attr-defined]
    async with b.client() as http:
        rest = await http.get("/api/channels/room:general/presence", headers=bearer(tokens["Watcher"]))
    assert [u["username"] for u in rest.json()["users"]] == ["Watcher"]
    await watcher.close()


@SCALED_AND_CLUSTER
async def test_connection_cap_and_revocation_across_replicas(pair: tuple[AppServer, AppServer]) -> None:
    a, b = pair
    await make_users(a.base_url, "Capped")
    first = await login_token(a.base_url, "Capped")
    second = await login_token(a.base_url, "Capped")
    one = await WsClient.connect(a.base_url, first["access_token"])
    two = await WsClient.connect(a.base_url, second["access_token"])
    assert (await one.request("ping"))["ok"] and (await two.request("ping"))["ok"]
    third = await WsClient.connect(b.base_url, first["access_token"])
    assert await third.close_code() == 4006

    async with a.client() as http:
        started = time.monotonic()
        sessions = (await http.get("/api/auth/sessions", headers=bearer(second["access_token"]))).json()
        target = next(s["id"] for s in sessions["sessions"] if not s["current"])
        revoked = await http.delete(f"/api/auth/sessions/{target}", headers=bearer(second["access_token"]))
        assert revoked.status_code == 204
    # `one` used the first session: it is closed with 4003 within a second, on its replica.
    assert await one.close_code(timeout=1.5) == 4003
    assert time.monotonic() - started < 1.5
    assert (await two.request("ping"))["ok"]
    await two.close()


@SCALED_AND_CLUSTER
async def test_revocation_closes_socket_on_the_other_replica(pair: tuple[AppServer, AppServer]) -> None:
    a, b = pair
    await make_users(a.base_url, "Revoked")
    session = await login_token(a.base_url, "Revoked")
    socket_on_b = await WsClient.connect(b.base_url, session["access_token"])
    assert (await socket_on_b.request("ping"))["ok"]
    async with a.client() as http:
        started = time.monotonic()
        out = await http.post("/api/auth/logout", headers=bearer(session["access_token"]))
        assert out.status_code == 204
    assert await socket_on_b.close_code(timeout=1.0) == 4003
    assert time.monotonic() - started < 1.0


async def test_refresh_keeps_connection_alive_past_expiry(backend: dict[str, Any]) -> None:
    # 6 s: enough for the logins, connects and refresh below on a loaded machine, before the expiry.
    async with AppServer(make_settings(ACCESS_TOKEN_TTL=6, **backend)) as server:
        await make_users(server.base_url, "Fresh")
        session = await login_token(server.base_url, "Fresh")
        stale = await login_token(server.base_url, "Fresh")
        keeper = await WsClient.connect(server.base_url, session["access_token"])
        expiring = await WsClient.connect(server.base_url, stale["access_token"])
        await asyncio.sleep(1.0)
        async with server.client() as http:
            renewed = (await http.post("/api/auth/refresh",
                                       json={"refresh_token": session["refresh_token"]})).json()
        reply = await keeper.request("refresh", token=renewed["access_token"])
        assert reply["ok"] and reply["expires_at"] > time.time()
        assert await expiring.close_code(timeout=10) == 4100  # the first tokens' expiry has passed
        await asyncio.sleep(0.2)
        assert (await keeper.request("ping"))["ok"]
        other = await login_token(server.base_url, "Fresh")
        bad = await keeper.request("refresh", token="not-a-token-at-all")
        assert bad["error"]["code"] == "invalid_token"
        assert other
        await keeper.close()


def _replica_env(backend: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**backend, "DRAIN_SECONDS": 2, "PRESENCE_TTL": 3, "PRESENCE_HEARTBEAT": 1, "PRESENCE_SWEEP": 1,
            "WS_PUBLISH_BURST": 500, "WS_PUBLISH_RATE": 500, "MAINTENANCE_ENABLED": "false", **extra}


@SCALED_AND_CLUSTER
async def test_sigkill_clears_presence(scaled_backend: dict[str, Any], tmp_path: Path) -> None:
    env = _replica_env(scaled_backend)
    doomed = Replica(env, log_path=tmp_path / "doomed.log").start()
    survivor = Replica(env, log_path=tmp_path / "survivor.log").start()
    try:
        tokens = await make_users(survivor.base_url, "Stayer", "Goner")
        stayer = await WsClient.connect(survivor.base_url, tokens["Stayer"])
        await stayer.request("subscribe", channel="room:general")
        goner = await WsClient.connect(doomed.base_url, tokens["Goner"])
        await goner.request("subscribe", channel="room:general")
        await stayer.push_about("join", "Goner")
        doomed.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await stayer.push_about("leave", "Goner", timeout=60)
        assert time.monotonic() - killed_at < 60
        users = await stayer.request("presence", channel="room:general")
        assert [u["username"] for u in users["users"]] == ["Stayer"]
        await stayer.close()
    finally:
        doomed.stop()
        survivor.stop()


@SCALED_AND_CLUSTER
async def test_sigterm_drains_with_1012_and_clients_recover_without_loss(
    scaled_backend: dict[str, Any], tmp_path: Path
) -> None:
    env = _replica_env(scaled_backend)
    leaving = Replica(env, log_path=tmp_path / "leaving.log").start()
    staying = Replica(env, log_path=tmp_path / "staying.log").start()
    try:
        tokens = await make_users(staying.base_url, "Mover", "Talker")
        mover = await WsClient.connect(leaving.base_url, tokens["Mover"])
        sub = await mover.request("subscribe", channel="room:general")
        talker = await WsClient.connect(staying.base_url, tokens["Talker"])
        await talker.request("subscribe", channel="room:general")

        stop = asyncio.Event()
        published: list[int] = []

        async def talk() -> None:
            n = 0
            while not stop.is_set():
                reply = await talker.request("publish", channel="room:general", data={"text": str(n)})
                published.append(reply["offset"])
                n += 1
                await asyncio.sleep(0.01)

        talking = asyncio.create_task(talk())
        await asyncio.sleep(0.3)
        received = []
        leaving.signal(signal.SIGTERM)
        async with httpx.AsyncClient() as http:
            for _ in range(20):  # readiness turns 503 while draining
                try:
                    if (await http.get(f"{leaving.base_url}/api/ready", timeout=1)).status_code == 503:
                        break
                except httpx.TransportError:
                    break
                await asyncio.sleep(0.05)
        code = await mover.close_code(timeout=10)
        while not mover.pushes.empty():
            push = mover.pushes.get_nowait()
            if push["op"] == "message":
                received.append(push)
        assert code == 1012
        last = received[-1]["offset"] if received else sub["offset"]
        back = await WsClient.connect(staying.base_url, tokens["Mover"])
        reply = await back.request("subscribe", channel="room:general",
                                   since={"offset": last, "epoch": sub["epoch"]})
        assert reply["recovered"] is True
        received.extend(reply["missed"])
        await asyncio.sleep(0.3)
        stop.set()
        await talking
        await asyncio.sleep(0.3)
        while not back.pushes.empty():
            push = back.pushes.get_nowait()
            if push["op"] == "message":
                received.append(push)
        offsets = [m["offset"] for m in received]
        assert offsets == sorted(set(offsets)), "duplicates or reordering"
        assert offsets == list(range(sub["offset"] + 1, published[-1] + 1)), "a message was lost"
        assert leaving.wait(15) is not None
        await back.close()
        await talker.close()
    finally:
        leaving.stop()
        staying.stop()


async def test_redis_outage_keeps_local_delivery_and_recovers(
    scaled_backend: dict[str, Any], tmp_path: Path
) -> None:
    own = RedisServer().start()
    try:
        settings = make_settings(**{**scaled_backend, "REDIS_URL": own.url, "REDIS_HEALTH_INTERVAL": 0.2,
                                    "REDIS_TIMEOUT": 0.3, "WS_PUBLISH_BURST": 500, "WS_PUBLISH_RATE": 500})
        async with AppServer(settings) as a, AppServer(settings) as b:
            tokens = await make_users(a.base_url, "Near", "Far", "Poster")
            near = await WsClient.connect(a.base_url, tokens["Near"])
            far = await WsClient.connect(b.base_url, tokens["Far"])
            poster = await WsClient.connect(a.base_url, tokens["Poster"])
            for client in (near, far, poster):
                await client.request("subscribe", channel="room:general")
            await poster.request("publish", channel="room:general", data={"text": "0"})
            assert (await far.push("message"))["data"] == {"text": "0"}

            own.kill()
            async with a.client() as http:
                for _ in range(50):
                    ready = await http.get("/api/ready")
                    if ready.status_code == 503:
                        break
                    await asyncio.sleep(0.1)
                assert ready.status_code == 503 and "redis" in ready.json()["failed"]
            for n in range(1, 6):
                reply = await poster.request("publish", channel="room:general", data={"text": str(n)})
                assert reply["ok"], reply
            got = [int(m["data"]["text"]) for m in await near.messages(6, timeout=5)]
            assert got == [0, 1, 2, 3, 4, 5], "local delivery must go on without Redis"

            own.start()
            for n in range(6, 9):
                for _ in range(50):
                    reply = await poster.request("publish", channel="room:general", data={"text": str(n)})
                    if reply["ok"]:
                        break
                    await asyncio.sleep(0.1)
            far_got = [int(m["data"]["text"]) for m in await far.messages(8, timeout=15)]
            assert far_got == list(range(1, 9)), "cross-replica delivery resumes with what was missed"
            near_got = [int(m["data"]["text"]) for m in await near.messages(3, timeout=5)]
            assert near_got == [6, 7, 8]
            async with a.client() as http:
                for _ in range(50):
                    if (await http.get("/api/ready")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                page = await http.get("/api/channels/room:general/messages?since=0&limit=50",
                                      headers=bearer(tokens["Near"]))
            assert [int(m["data"]["text"]) for m in page.json()["messages"]] == list(range(9)), "persisted"
            for client in (near, far, poster):
                await client.close()
    finally:
        own.cleanup()


@SCALED_AND_CLUSTER
async def test_a_message_behind_an_offset_redis_lost_reaches_members_without_a_later_message(
        pair: tuple[AppServer, AppServer], scaled_backend: dict[str, Any]) -> None:
    """A Redis failover can promote a replica that had not yet received the master's last write
    (replication is asynchronous): Redis then remembers offset 1 of a channel whose offset 2 was
    stored, acknowledged and delivered. The next message, 3, waits in the history for 2, which will
    never pass through Redis again; it must still reach the members once it is stale (the history
    looked again only when yet another message came: on a quiet DM, never; seen in the soak)."""
    import redis as redis_sync

    a, b = pair
    url = scaled_backend["REDIS_URL"]
    store: Any = (redis_sync.RedisCluster if scaled_backend.get("REDIS_CLUSTER") else redis_sync.Redis).from_url(url)
    tokens = await make_users(a.base_url, "Quiet_Poster", "Quiet_Reader")
    poster = await WsClient.connect(a.base_url, tokens["Quiet_Poster"])
    reader = await WsClient.connect(b.base_url, tokens["Quiet_Reader"])
    try:
        await reader.request("subscribe", channel="room:general")
        for n in (1, 2):
            assert (await poster.request("publish", channel="room:general", data={"text": f"m{n}"}))["ok"]
            assert (await reader.push("message"))["offset"] == n
        store.set("vonix:h:{room:general}:offset", 1)  # what the promoted replica has
        reply = await poster.request("publish", channel="room:general", data={"text": "m3"})
        assert reply["ok"] and reply["offset"] == 3
        started = time.monotonic()
        message = await reader.push("message", timeout=10)  # 2 s stale_ms, and nothing else is sent
        assert (message["offset"], message["data"]) == (3, {"text": "m3"})
        assert time.monotonic() - started < 5
        await asyncio.sleep(0.3)
        assert_no_message_queued(reader)  # once: no second copy
        assert int(store.get("vonix:h:{room:general}:offset")) == 3
        assert store.zcard("vonix:h:{room:general}:pending") == 0
    finally:
        await poster.close()
        await reader.close()
        store.close()


async def test_a_message_whose_publish_failed_reaches_the_other_replica_without_a_later_message(
        scaled_backend: dict[str, Any]) -> None:
    """A's publish to Redis fails while B's broker stays connected, so B sees no gap to fill: the
    message is stored and delivered on A only. A publishes it again until Redis takes it, and B's
    member gets it with no later message. (Seen in the soak: after a Redis failover the replicas'
    brokers were back before one replica's publish hit the dead master; the quiet DM had no next
    message, and its member never got it.) Here A's Redis user may not run scripts for a moment."""
    import redis as redis_sync

    own = RedisServer().start()
    admin = redis_sync.Redis(port=own.port)
    admin.execute_command("ACL", "SETUSER", "replica_a", "on", ">secret-a", "~*", "&*", "+@all")
    try:
        base = {**scaled_backend, "REDIS_URL": own.url, "WS_PUBLISH_BURST": 500, "WS_PUBLISH_RATE": 500,
                "SECRET_KEY": "one-secret-for-both-replicas-" + "x" * 32}  # tokens valid on either
        only_a = {**base, "REDIS_URL": f"redis://replica_a:secret-a@127.0.0.1:{own.port}/0"}
        async with AppServer(make_settings(**only_a)) as a, AppServer(make_settings(**base)) as b:
            tokens = await make_users(a.base_url, "Lone_Poster", "Lone_Reader")
            poster = await WsClient.connect(a.base_url, tokens["Lone_Poster"])
            reader = await WsClient.connect(b.base_url, tokens["Lone_Reader"])
            try:
                for client in (poster, reader):
                    await client.request("subscribe", channel="room:general")
                assert (await poster.request("publish", channel="room:general", data={"text": "before"}))["ok"]
                for client in (poster, reader):
                    assert (await client.push("message"))["data"] == {"text": "before"}

                admin.execute_command("ACL", "SETUSER", "replica_a", "-evalsha", "-eval")
                reply = await poster.request("publish", channel="room:general", data={"text": "alone"})
                assert reply["ok"] and reply["offset"] == 2  # stored and acknowledged
                assert (await poster.push("message"))["data"] == {"text": "alone"}  # A delivered it itself
                with pytest.raises(TimeoutError):
                    await reader.push("message", timeout=1.0)  # B has not heard of it

                admin.execute_command("ACL", "SETUSER", "replica_a", "+evalsha", "+eval")
                message = await reader.push("message", timeout=10)
                assert (message["offset"], message["data"]) == (2, {"text": "alone"})
                await asyncio.sleep(0.5)
                assert_no_message_queued(poster, reader)  # once on each side: no second copy
            finally:
                await poster.close()
                await reader.close()
    finally:
        admin.close()
        own.cleanup()


async def test_a_gap_fill_waits_out_a_database_restart_instead_of_skipping_the_gap(
        scaled_backend: dict[str, Any]) -> None:
    """B's broker missed messages 2 and 3 (Redis ended its subscription); when it is back, B fills
    the gap from the database, which is restarting at that moment. The fill must retry until the
    database answers: giving up dropped the gap for good, and on a quiet channel (no later message
    to show it again) the member never got them (the soak lost messages so, PostgreSQL restart)."""
    import redis as redis_sync

    from server.db import migrate
    from server.db.urls import parse_database_url
    from tests.support.services import PostgresServer

    pg = PostgresServer().init().start()  # this test stops its PostgreSQL: not the shared one
    own = RedisServer().start()
    admin = redis_sync.Redis(port=own.port)
    admin.execute_command("ACL", "SETUSER", "replica_b", "on", ">secret-b", "~*", "&*", "+@all")
    try:
        pg.psql("CREATE DATABASE gap")
        await asyncio.to_thread(migrate.upgrade, parse_database_url(pg.url("gap")))
        base = {"DATABASE_URL": pg.url("gap"), "REDIS_URL": own.url, "REDIS_HEALTH_INTERVAL": 0.2,
                "SECRET_KEY": "one-secret-for-both-replicas-" + "y" * 32}
        only_b = {**base, "REDIS_URL": f"redis://replica_b:secret-b@127.0.0.1:{own.port}/0"}
        async with AppServer(make_settings(**base)) as a, AppServer(make_settings(**only_b)) as b:
            tokens = await make_users(a.base_url, "Gap_Poster", "Gap_Reader")
            poster = await WsClient.connect(a.base_url, tokens["Gap_Poster"])
            reader = await WsClient.connect(b.base_url, tokens["Gap_Reader"])
            try:
                await reader.request("subscribe", channel="room:general")
                assert (await poster.request("publish", channel="room:general", data={"text": "m1"}))["ok"]
                assert (await reader.push("message"))["offset"] == 1

                # Redis ends B's subscriber connection, and B may not subscribe again for now.
                admin.execute_command("ACL", "SETUSER", "replica_b", "resetchannels")
                await asyncio.sleep(0.5)
                for n in (2, 3):
                    assert (await poster.request("publish", channel="room:general", data={"text": f"m{n}"}))["ok"]
                with pytest.raises(TimeoutError):
                    await reader.push("message", timeout=0.5)

                await asyncio.to_thread(pg.stop, "fast")
                admin.execute_command("ACL", "SETUSER", "replica_b", "&*")  # B's broker comes back ...
                async with b.client() as http:
                    deadline = time.monotonic() + 20
                    while "vonix_broker_reconnects_total 1.0" not in (await http.get("/metrics")).text:
                        assert time.monotonic() < deadline, "B's broker did not come back"
                        await asyncio.sleep(0.1)
                await asyncio.sleep(1.5)  # ... and its catch-up finds the database down, more than once
                await asyncio.to_thread(pg.start)
                got = await reader.messages(2, timeout=20)  # nothing else is published
                assert [(m["offset"], m["data"]["text"]) for m in got] == [(2, "m2"), (3, "m3")]
            finally:
                await poster.close()
                await reader.close()
    finally:
        admin.close()
        own.cleanup()
        pg.cleanup()
