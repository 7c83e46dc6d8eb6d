"""Websocket protocol v1 against real servers: fan-out, recovery, nonces, errors, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime.broker.cluster import ClusterBroker
from tests.conftest import SCALED_AND_CLUSTER, THREE_MODES, make_settings
from tests.support.accounts import bearer, login, register
from tests.support.appserver import AppServer
from tests.support.cluster import RedisClusterServers
from tests.support.wsclient import WsClient


async def tokens_for(server: AppServer, *names: str) -> dict[str, str]:
    out = {}
    async with server.client() as client:
        for name in names:
            await register(client, name)
            out[name] = (await login(client, name.lower()))["access_token"]
    return out


@pytest.fixture
async def replicas(scaled_backend: dict[str, Any]) -> Any:
    """Two app replicas on one PostgreSQL and one Redis."""
    settings = make_settings(WS_PUBLISH_BURST=200, **scaled_backend)
    async with AppServer(settings) as a, AppServer(settings) as b:
        yield a, b


@SCALED_AND_CLUSTER
async def test_two_replicas_deliver_once_in_order(replicas: tuple[AppServer, AppServer]) -> None:
    a, b = replicas
    tokens = await tokens_for(a, "Ann", "Ben", "Cat")
    on_a = await WsClient.connect(a.base_url, tokens["Ann"])
    on_b = await WsClient.connect(b.base_url, tokens["Ben"])
    also_b = await WsClient.connect(b.base_url, tokens["Cat"])
    for client in (on_a, on_b, also_b):
        reply = await client.request("subscribe", channel="room:general")
        assert reply["ok"] and reply["offset"] == 0
    for i in range(50):
        publisher = on_a if i % 2 == 0 else on_b
        reply = await publisher.request("publish", channel="room:general", data={"text": f"m{i}"})
        assert reply["ok"]
    for client in (on_a, on_b, also_b):
        got = await client.messages(50)
        assert [m["offset"] for m in got] == list(range(1, 51))
        assert [m["data"]["text"] for m in got] == [f"m{i}" for i in range(50)]
    await asyncio.sleep(0.2)
    for client in (on_a, on_b, also_b):
        extra = [client.pushes.get_nowait() for _ in range(client.pushes.qsize())]
        assert [p for p in extra if p["op"] == "message"] == [], "a message was delivered twice"
    for client in (on_a, on_b, also_b):
        await client.close()


@pytest.fixture
async def roomy_server(backend: dict[str, Any]) -> Any:
    async with AppServer(make_settings(WS_PUBLISH_BURST=500, WS_PUBLISH_RATE=500, **backend)) as server:
        yield server


@THREE_MODES
async def test_recovery_after_reconnect(roomy_server: AppServer) -> None:
    app_server = roomy_server
    tokens = await tokens_for(app_server, "Rita", "Sam")
    reader = await WsClient.connect(app_server.base_url, tokens["Rita"])
    writer = await WsClient.connect(app_server.base_url, tokens["Sam"])
    first = await reader.request("subscribe", channel="room:general")
    await writer.request("publish", channel="room:general", data={"text": "0"})
    seen = await reader.push("message")
    await reader.close()
    for n in range(1, 101):
        await writer.request("publish", channel="room:general", data={"text": str(n)})
    back = await WsClient.connect(app_server.base_url, tokens["Rita"])
    reply = await back.request("subscribe", channel="room:general",
                               since={"offset": seen["offset"], "epoch": first["epoch"]})
    assert reply["recovered"] is True
    assert [int(m["data"]["text"]) for m in reply["missed"]] == list(range(1, 101))
    assert [m["offset"] for m in reply["missed"]] == list(range(seen["offset"] + 1, seen["offset"] + 101))
    await writer.request("publish", channel="room:general", data={"text": "101"})
    live = await back.push("message")
    assert live["data"]["text"] == "101"
    await asyncio.sleep(0.1)
    assert back.pushes.empty()
    await back.close()
    await writer.close()


@THREE_MODES
async def test_recovery_past_hot_window(backend: dict[str, Any]) -> None:
    settings = make_settings(WS_HISTORY_SIZE=10, WS_PUBLISH_BURST=500, WS_PUBLISH_RATE=500, **backend)
    async with AppServer(settings) as server:
        tokens = await tokens_for(server, "Past", "Bot_Maker")
        from server.db.queries import users

        await users.update(server.resources.db, (await users.by_username(server.resources.db, "past"))["id"],
                           role="admin")  # admins may publish on bot channels
        client = await WsClient.connect(server.base_url, tokens["Past"])
        room = await client.request("subscribe", channel="room:general")
        eph = await client.request("subscribe", channel="bot:weather")
        await client.request("unsubscribe", channel="room:general")
        await client.request("unsubscribe", channel="bot:weather")
        for n in range(60):
            assert (await client.request("publish", channel="room:general", data={"text": str(n)}))["ok"]
            assert (await client.request("publish", channel="bot:weather", data={"text": str(n)}))["ok"]
        persisted = await client.request("subscribe", channel="room:general",
                                         since={"offset": room["offset"], "epoch": room["epoch"]})
        ephemeral = await client.request("subscribe", channel="bot:weather",
                                         since={"offset": eph["offset"], "epoch": eph["epoch"]})
        assert persisted["recovered"] is True
        assert [int(m["data"]["text"]) for m in persisted["missed"]] == list(range(60))
        assert ephemeral["recovered"] is False and ephemeral["missed"] == []
        await client.close()


@THREE_MODES
async def test_repeated_nonce_publishes_once(app_server: AppServer) -> None:
    tokens = await tokens_for(app_server, "Nina")
    client = await WsClient.connect(app_server.base_url, tokens["Nina"])
    await client.request("subscribe", channel="room:general")
    first = await client.request("publish", channel="room:general", data={"text": "once"}, nonce="abc-123")
    second = await client.request("publish", channel="room:general", data={"text": "once"}, nonce="abc-123")
    assert first["offset"] == second["offset"]
    assert (await client.push("message"))["data"] == {"text": "once"}
    await asyncio.sleep(0.3)
    assert [p for p in list(client.pushes._queue) if p["op"] == "message"] == []  # type: ignore[attr-defined]
    async with app_server.client() as http:
        rest = await http.post("/api/channels/room:general/messages", json={"data": {"text": "once"},
                                                                            "nonce": "abc-123"},
                               headers=bearer(tokens["Nina"]))
        page = await http.get("/api/channels/room:general/messages", headers=bearer(tokens["Nina"]))
    assert rest.status_code == 201 and rest.json()["offset"] == first["offset"]
    assert [m["data"] for m in page.json()["messages"]] == [{"text": "once"}]
    await client.close()


@THREE_MODES
async def test_protocol_errors(app_server: AppServer) -> None:
    tokens = await tokens_for(app_server, "Eve", "Hal")
    bystander = await WsClient.connect(app_server.base_url, tokens["Hal"])
    await bystander.request("subscribe", channel="room:general")
    client = await WsClient.connect(app_server.base_url, tokens["Eve"])

    async def raw(frame: str) -> dict[str, Any]:
        await client.send_raw(frame)
        for _ in range(50):
            if client.unmatched:
                return client.unmatched.pop(0)
            await asyncio.sleep(0.02)
        raise AssertionError("no reply")

    assert (await raw("{not json"))["error"]["code"] == "invalid_json"
    assert (await raw("[1,2]"))["error"]["code"] == "invalid_frame"
    assert (await raw('{"op":"ping"}'))["error"]["code"] == "invalid_frame"
    unknown = await client.request("dance")
    assert unknown["error"]["code"] == "unknown_op" and unknown["error"]["temporary"] is False
    assert (await client.request("subscribe"))["error"]["code"] == "invalid_frame"
    assert (await client.request("subscribe", channel="nowhere"))["error"]["code"] == "invalid_channel"
    assert (await client.request("publish", channel="room:general"))["error"]["code"] == "invalid_frame"
    assert (await client.request("subscribe", channel="user:999"))["error"]["code"] == "forbidden"
    assert (await client.request("subscribe", channel="dm:900:901"))["error"]["code"] == "forbidden"
    me = (await client.request("ping")) and (await client.request("auth", token=tokens["Eve"]))
    assert me["error"]["code"] == "already_authenticated"
    assert (await client.request("unsubscribe", channel="room:general"))["error"]["code"] == "not_subscribed"
    assert (await client.request("ping"))["pong"] is True
    await bystander.request("publish", channel="room:general", data={"text": "still fine"})
    assert (await bystander.push("message"))["data"] == {"text": "still fine"}

    await client.send_raw("x" * (65 * 1024))
    assert await client.close_code() == 4009
    await bystander.request("publish", channel="room:general", data={"text": "after big frame"})
    assert (await bystander.push("message"))["data"] == {"text": "after big frame"}
    await bystander.close()


@THREE_MODES
async def test_publish_flood_is_limited_then_cut(backend: dict[str, Any]) -> None:
    settings = make_settings(WS_PUBLISH_RATE=0.5, WS_PUBLISH_BURST=5, **backend)
    async with AppServer(settings) as server:
        tokens = await tokens_for(server, "Flo")
        client = await WsClient.connect(server.base_url, tokens["Flo"])
        results = []
        for n in range(8):
            results.append(await client.request("publish", channel="room:general", data={"text": str(n)}))
        assert [r["ok"] for r in results[:5]] == [True] * 5
        limited = results[5]
        assert limited["error"]["code"] == "rate_limited" and limited["error"]["temporary"] is True
        assert limited["error"]["retry_after"] > 0
        for n in range(60):
            try:
                await client.request("publish", channel="room:general", data={"text": str(n)}, timeout=2)
            except (TimeoutError, ConnectionError):
                break
        assert await client.close_code() == 4102


async def test_foreign_origin_and_bad_token(app_server: AppServer) -> None:
    tokens = await tokens_for(app_server, "Orrin")
    foreign = await WsClient.connect(app_server.base_url, tokens["Orrin"], origin="https://evil.example")
    assert await foreign.close_code() == 4004
    same = await WsClient.connect(app_server.base_url, tokens["Orrin"], origin=app_server.base_url)
    assert (await same.request("ping"))["ok"]
    await same.close()
    bad = await WsClient.connect(app_server.base_url, "garbage-token-123")
    assert await bad.close_code() == 4001
    anonymous = await WsClient.connect(app_server.base_url)
    assert (await anonymous.request("subscribe", channel="room:general"))["error"]["code"] == "not_authenticated"
    assert (await anonymous.request("auth", token=tokens["Orrin"]))["user"]["username"] == "Orrin"
    assert (await anonymous.request("subscribe", channel="room:general"))["ok"]
    await anonymous.close()


async def test_auth_frame_timeout(backend: dict[str, Any]) -> None:
    async with AppServer(make_settings(WS_AUTH_TIMEOUT=0.5, **backend)) as server:
        client = await WsClient.connect(server.base_url)
        assert await client.close_code() == 4002


@THREE_MODES
async def test_slow_consumer_is_cut_off_and_others_keep_up(backend: dict[str, Any]) -> None:
    settings = make_settings(WS_MAX_QUEUE_BYTES=64 * 1024, WS_PUBLISH_RATE=1000, WS_PUBLISH_BURST=1000, **backend)
    async with AppServer(settings) as server:
        tokens = await tokens_for(server, "Slow", "Fast", "Pub")
        from server.db.queries import users

        pub_row = await users.by_username(server.resources.db, "pub")
        await users.update(server.resources.db, pub_row["id"], role="admin")
        fast = await WsClient.connect(server.base_url, tokens["Fast"])
        import socket

        tiny = socket.socket()  # a small fixed receive buffer (no autotuning): the kernel fills fast
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        tiny.connect(("127.0.0.1", server.port))
        tiny.setblocking(False)
        slow = await WsClient.connect(server.base_url, tokens["Slow"], max_queue=1, sock=tiny)
        publisher = await WsClient.connect(server.base_url, tokens["Pub"])
        await fast.request("subscribe", channel="bot:firehose")
        await slow.request("subscribe", channel="bot:firehose")
        slow._reader.cancel()  # stop reading: the kernel buffers fill, then the server queue
        import resource

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        import secrets

        blob = secrets.token_hex(8000)  # incompressible
        for n in range(1000):
            await publisher.request("publish", channel="bot:firehose", data={"n": n, "blob": blob})
        got = await fast.messages(1000, timeout=30)
        assert [m["data"]["n"] for m in got] == list(range(1000))
        node = server.resources.node
        for _ in range(100):
            if len(node.hub.connections) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(node.hub.connections) == 2, "the slow consumer was not disconnected"
        queued = max(c.queued_bytes for c in node.hub.connections.values())
        assert queued <= 64 * 1024
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert rss_after - rss_before < 100 * 1024, "memory grew by more than 100 MiB"  # KiB units
        text = server.resources.metrics.render().decode()
        assert 'vonix_ws_disconnects_total{code="4101"} 1.0' in text
        await fast.close()
        await publisher.close()
        slow.closed = asyncio.get_running_loop().create_future()
        slow._reader = asyncio.create_task(slow._read())  # read again: the close code is there
        assert await slow.close_code(timeout=10) == 4101


@THREE_MODES
async def test_large_gap_recovers_completely_from_the_database(backend: dict[str, Any]) -> None:
    """More than one database page (200) past the hot window: every message, or recovered:false."""
    settings = make_settings(WS_HISTORY_SIZE=10, WS_PUBLISH_BURST=1000, WS_PUBLISH_RATE=1000, **backend)
    async with AppServer(settings) as server:
        tokens = await tokens_for(server, "Gappy")
        client = await WsClient.connect(server.base_url, tokens["Gappy"])
        first = await client.request("subscribe", channel="room:general")
        await client.request("unsubscribe", channel="room:general")
        for n in range(450):
            assert (await client.request("publish", channel="room:general", data={"text": str(n)}))["ok"]
        back = await client.request("subscribe", channel="room:general",
                                    since={"offset": first["offset"], "epoch": first["epoch"]})
        assert back["recovered"] is True
        assert [int(m["data"]["text"]) for m in back["missed"]] == list(range(450))
        await client.close()


@pytest.mark.parametrize("backend", ["cluster"], indirect=True)
async def test_the_cluster_mode_runs_on_the_cluster(app_server: AppServer,
                                                    redis_cluster_service: RedisClusterServers) -> None:
    """The third mode is what it says: sharded pub/sub on the cluster's masters, not a single Redis."""
    assert isinstance(app_server.resources.broker, ClusterBroker)
    tokens = await tokens_for(app_server, "Cleo")
    client = await WsClient.connect(app_server.base_url, tokens["Cleo"])
    assert (await client.request("subscribe", channel="room:general"))["ok"]
    shard_channels = [node.command("pubsub", "shardchannels").split() for node in redis_cluster_service.masters_now()]
    assert sum("room:general" in channel for listed in shard_channels for channel in listed) == 1, shard_channels
    await client.close()


async def test_a_drain_closes_every_connection_with_1012_spread_over_its_window(app_server: AppServer) -> None:
    """The drain schedules each close on a jittered timer (no task per connection): every client
    hears 1012 within the window, not all at the same instant, and each leaves presence and gives
    its slot under the per-user cap back (Dora may open her whole allowance again)."""
    tokens = await tokens_for(app_server, "Dora", "Eli", "Watch")
    async with app_server.client() as http:
        created = await http.post("/api/rooms", json={"name": "help"}, headers=bearer(tokens["Watch"]))
        assert created.status_code == 201, created.text
    clients = [await WsClient.connect(app_server.base_url, tokens["Dora" if i % 2 else "Eli"]) for i in range(24)]
    for client in clients:
        reply = await client.request("subscribe", channels=[{"channel": "room:general"}, {"channel": "room:help"}])
        assert [r["ok"] for r in reply["results"]] == [True, True]
    node = app_server.resources.node
    assert node is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed_at: list[float] = []

    async def close_time(client: WsClient) -> int | None:
        code = await client.close_code(timeout=5)
        closed_at.append(loop.time() - started)
        return code

    waiting = [asyncio.create_task(close_time(c)) for c in clients]
    await node.drain(0.6)
    drained_in = loop.time() - started
    codes = await asyncio.gather(*waiting)
    assert codes == [1012] * len(clients)
    assert drained_in < 3.0 and max(closed_at) < 1.5, (drained_in, max(closed_at))
    assert max(closed_at) - min(closed_at) > 0.1, "every connection closed at the same instant"
    for _ in range(100):  # the cleanups run as the closes finish
        if not node.hub.connections and not node.hub.by_user:
            break
        await asyncio.sleep(0.02)
    assert not node.hub.connections and not node.hub.by_user and not node.hub.channels
    node.draining = False  # a replica stays up after a drain only in this test: members may come back
    watcher = await WsClient.connect(app_server.base_url, tokens["Watch"])
    for room in ("room:general", "room:help"):
        await watcher.request("subscribe", channel=room)
        listed = await watcher.request("presence", channel=room)
        assert [u["username"] for u in listed["users"]] == ["Watch"], "a drained member is still shown present"
    again = [await WsClient.connect(app_server.base_url, tokens["Dora"]) for _ in range(20)]  # the cap is 20
    for client in again:
        assert (await client.request("ping"))["ok"]
    for client in (*again, watcher):
        await client.close()
