"""The slim websocket protocol's replacements for asyncio.Queue / asyncio.Event, and its slots."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from uvicorn.server import ServerState

from server.ws_protocol import Gate, Inbox, VonixWebSocketProtocol


async def test_inbox_is_fifo_and_wakes_the_waiting_consumer() -> None:
    inbox = Inbox()
    assert inbox.empty()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert not inbox.empty()
    assert [await inbox.get(), await inbox.get()] == [1, 2]
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait(3)
    assert await asyncio.wait_for(waiting, 1) == 3
    assert inbox.empty()


async def test_inbox_survives_a_cancelled_get_and_refuses_two_consumers() -> None:
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await inbox.get()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    inbox.put_nowait("after")
    assert await asyncio.wait_for(inbox.get(), 1) == "after"


async def test_gate_is_open_until_cleared_and_releases_every_waiter() -> None:
    gate = Gate()
    assert gate.is_set()
    assert await gate.wait()  # open: returns without suspending
    gate.clear()
    assert not gate.is_set()
    waiters = [asyncio.ensure_future(gate.wait()) for _ in range(3)]
    cancelled = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    cancelled.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True, True]
    assert gate._waiters == []


async def test_every_protocol_attribute_is_a_slot() -> None:
    """A uvicorn upgrade that adds attributes would put them back in a per-connection dict."""

    async def app(scope: object, receive: object, send: object) -> None: ...

    config = uvicorn.Config(app, ws=VonixWebSocketProtocol, log_config=None)
    config.load()
    protocol = VonixWebSocketProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    assert vars(protocol) == {}
    assert isinstance(protocol.queue, Inbox) and isinstance(protocol.writable, Gate)


async def test_without_the_write_extension_every_frame_takes_the_asgi_send() -> None:
    """Another ASGI server (no `write_text` in the scope): `write` declines, `send` carries the frame."""
    from server.ws import AsgiTransport

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    transport = AsgiTransport(send)  # type: ignore[arg-type]
    assert transport.write(b'{"op":"message"}') is False
    await transport.send(b'{"op":"message"}')
    assert sent == [{"type": "websocket.send", "text": '{"op":"message"}'}]
    written: list[bytes] = []
    fast = AsgiTransport(send, lambda data: written.append(data) is None)  # type: ignore[arg-type]
    assert fast.write(b"x") is True and written == [b"x"]
