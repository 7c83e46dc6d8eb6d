"""`/ws` is served ahead of the middleware stack (server/ws_entry.py) with the same behaviour.

The stack's only websocket work was the request context (connection id, route in every log line)
and Starlette's exception handlers; these tests pin both, plus the shape that makes an idle
connection cheap: no middleware frame stays suspended under a connected websocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from server.errors import ServiceUnavailable
from server.ws_protocol import VonixWebSocketProtocol
from tests.conftest import fresh_sqlite_url, make_settings
from tests.support.accounts import login, register
from tests.support.appserver import AppServer
from tests.support.wsclient import WsClient


@pytest.fixture
async def server(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    async with AppServer(make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path))) as running:
        yield running


async def token_for(server: AppServer, name: str) -> str:
    async with server.client() as client:
        await register(client, name)
        return (await login(client, name.lower()))["access_token"]  # type: ignore[no-any-return]


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def coroutine_chain(task: asyncio.Task[Any]) -> list[str]:
    """`module.qualname` of every coroutine frame the task is suspended in, outermost first."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        chain.append(f"{coro.cr_frame.f_globals.get('__name__')}.{coro.cr_code.co_qualname}")
        coro = coro.cr_await
    return chain


async def test_an_idle_websocket_holds_no_middleware_frame(server: AppServer) -> None:
    client = await WsClient.connect(server.base_url, await token_for(server, "Idle_Ida"))
    assert (await client.request("subscribe", channel="room:general"))["ok"]
    assert server._server is not None
    chains = [coroutine_chain(task) for task in server._server.server_state.tasks]
    [chain] = [c for c in chains if c and c[0].startswith("uvicorn.protocols.websockets.")]  # the one connection
    assert not [f for f in chain if f.startswith(("server.middleware", "starlette."))], chain
    assert "server.ws.websocket_app" in chain
    await client.close()


async def test_connection_id_and_route_in_every_websocket_log_line(
    server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = await token_for(server, "Logged_Lou")
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}",
                                                           "X-Request-ID": "client-chosen.id-1"}) as ws:
        await ws.send('{"id":1,"op":"ping"}')
        await ws.recv()
    async with websockets.connect(url, additional_headers={"X-Request-ID": "not a sane id!"}) as ws:
        await ws.send('{"id":1,"op":"ping"}')
        await ws.recv()
    for _ in range(100):
        if len(events(caplog, "ws_disconnected")) == 2:
            break
        await asyncio.sleep(0.02)
    connected, disconnected = events(caplog, "ws_connected"), events(caplog, "ws_disconnected")
    assert [e["connection_id"] for e in connected] == [e["connection_id"] for e in disconnected]
    assert connected[0]["connection_id"] == "client-chosen.id-1"
    assert len(connected[1]["connection_id"]) == 32 and connected[1]["connection_id"] != "not a sane id!"
    assert all(e["route"] == "/ws" for e in connected + disconnected)


async def test_foreign_origin_closed_with_4004_and_logged_nowhere_as_connected(
    server: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client = await WsClient.connect(server.base_url, await token_for(server, "Far_Fay"), origin="https://evil.example")
    assert await client.close_code() == 4004
    assert events(caplog, "ws_connected") == []


async def test_an_app_error_during_the_handshake_is_answered_by_its_handler(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(token: str) -> Any:
        raise ServiceUnavailable("try again shortly")

    monkeypatch.setattr(server.resources.hooks, "authenticate", unavailable)
    url = server.base_url.replace("http://", "ws://") + "/ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, additional_headers={"Authorization": "Bearer whatever", "X-Request-ID": "r-503"})
    response = refused.value.response
    assert response.status_code == 503
    assert b'"request_id":"r-503"' in response.body


async def test_http_and_other_websocket_paths_still_take_the_stack(server: AppServer) -> None:
    async with server.client() as client:
        response = await client.get("/api/health", headers={"X-Request-ID": "http-1"})
    assert response.headers["x-request-id"] == "http-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    url = server.base_url.replace("http://", "ws://") + "/ws/"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 403  # no route: Starlette's router refuses


# Chat messages hold at most 4,000 characters: 4-byte emoji make five of them over 64 KiB together.
LARGE = [c * 4000 for c in "\U0001F600\U0001F601\U0001F602\U0001F642\U0001F643"]


async def test_frames_are_written_by_the_protocol_itself_at_every_length_class(
    sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fan-out fast path (`VonixWebSocketProtocol.write_text`) frames what it writes itself:
    7-bit, 16-bit and 64-bit payload lengths must each reach a strict client (websockets) intact,
    and none of these frames may take uvicorn's ASGI `send` (the slow path) instead."""
    asgi_sends: list[dict[str, Any]] = []
    original = VonixWebSocketProtocol.send

    async def counting(self: VonixWebSocketProtocol, message: Any) -> None:
        if message["type"] == "websocket.send":
            asgi_sends.append(message)
        await original(self, message)

    monkeypatch.setattr(VonixWebSocketProtocol, "send", counting)
    settings = make_settings(DATABASE_URL=fresh_sqlite_url(sqlite_template, tmp_path), WS_COALESCE_MS=300)
    async with AppServer(settings) as server:
        token = await token_for(server, "Wide_Wanda")
        url = server.base_url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                      max_size=2**22) as reader:
            await reader.send(orjson.dumps({"id": 1, "op": "subscribe", "channel": "room:general"}).decode())
            while '"id":1' not in await asyncio.wait_for(reader.recv(), 5):  # the reply (and a join push)
                pass
            publisher = await WsClient.connect(server.base_url, token)  # same user: no second join
            await reader.send(orjson.dumps({"id": 2, "op": "ping"}).decode())
            frames = [await asyncio.wait_for(reader.recv(), 5)]
            await publisher.request("publish", channel="room:general", data={"text": "a" * 200})
            frames.append(await reader.recv())
            await asyncio.gather(*(publisher.request("publish", channel="room:general", data={"text": text})
                                   for text in LARGE))
            received = 0
            while received < len(LARGE):
                frames.append(await asyncio.wait_for(reader.recv(), 5))
                received += frames[-1].count('"op":"message"')
            await publisher.close()

    assert orjson.loads(frames[0]) == {"id": 2, "ok": True, "pong": True} and len(frames[0]) < 126
    assert 126 <= len(frames[1]) < 65536 and orjson.loads(frames[1])["data"]["text"] == "a" * 200
    assert len(frames[2].encode()) >= 65536, "the large messages were coalesced into one frame"
    texts = sorted(orjson.loads(line)["data"]["text"] for frame in frames[2:] for line in frame.split("\n"))
    assert texts == sorted(LARGE)
    assert asgi_sends == []
