"""The outbound path of a connection: shared coalescing timer, synchronous sends, backpressure.

A fake transport stands in for the websocket: it records frames and can make `send` wait (the
transport is not writable), to prove order, batching and the slow-consumer cut-off hold when a
send cannot finish at once.
"""

from __future__ import annotations

import asyncio

from realtime import errors
from realtime.connection import Connection, Flusher, TokenBucket
from realtime.errors import Disconnect


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.fail: Exception | None = None

    def write(self, data: bytes) -> bool:
        if not self.writable.is_set():
            return False
        if self.fail is not None:
            raise self.fail
        self.sent.append(data.decode())
        return True

    async def send(self, data: bytes) -> None:
        await self.writable.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append(data.decode())

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def make(flusher: Flusher, max_queue_bytes: int = 1 << 20) -> tuple[Connection, FakeTransport, list]:
    transport = FakeTransport()
    closed: list[Disconnect | None] = []
    conn = Connection("c", transport, max_queue_bytes=max_queue_bytes, coalesce=flusher.delay,
                      limiter=TokenBucket(10, 20), on_closed=lambda _c, reason: closed.append(reason),
                      flusher=flusher)
    conn.start()
    return conn, transport, closed


async def until(predicate, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def test_frames_queued_within_the_window_go_out_as_one_frame() -> None:
    conn, transport, _ = make(Flusher(0.01))
    for frame in (b'{"n":1}', b'{"n":2}', b'{"n":3}'):
        conn.push(frame)
    assert transport.sent == []  # nothing before the window ends
    await until(lambda: transport.sent)
    assert transport.sent == ['{"n":1}\n{"n":2}\n{"n":3}']
    assert conn.queued_bytes == 0


async def test_one_timer_flushes_every_connection_of_the_node() -> None:
    flusher = Flusher(0.005)
    pairs = [make(flusher) for _ in range(50)]
    for conn, _, _ in pairs:
        conn.push(b"x")
    assert flusher._handle is not None and len(flusher._dirty) == 50
    await until(lambda: all(t.sent for _, t, _ in pairs))
    assert all(t.sent == ["x"] for _, t, _ in pairs)


async def test_a_long_flush_goes_in_chunks_and_the_next_window_waits_for_it() -> None:
    flusher = Flusher(0.0, chunk=2)
    pairs = [make(flusher) for _ in range(5)]
    for conn, _, _ in pairs:
        conn.push(b"a")
    await asyncio.sleep(0)  # the first chunk runs
    assert sum(bool(t.sent) for _, t, _ in pairs) == 2
    pairs[0][0].push(b"b")  # dirty again while the flush is still going: waits for the next window
    assert flusher._handle is None
    await until(lambda: all(t.sent for _, t, _ in pairs))
    await until(lambda: pairs[0][1].sent == ["a", "b"])
    assert [t.sent for _, t, _ in pairs[1:]] == [["a"]] * 4


async def test_backpressure_keeps_order_and_batches_what_queued_meanwhile() -> None:
    conn, transport, closed = make(Flusher(0.0))
    transport.writable.clear()
    conn.push(b"1")
    await asyncio.sleep(0.01)  # the send started and is waiting for the transport
    for frame in (b"2", b"3"):
        conn.push(frame)
    await asyncio.sleep(0.01)
    assert transport.sent == []
    transport.writable.set()
    await until(lambda: transport.sent == ["1", "2\n3"])
    conn.push(b"4")  # back to the synchronous path
    await until(lambda: transport.sent == ["1", "2\n3", "4"])
    assert closed == []


async def test_a_consumer_that_cannot_keep_up_is_cut_off() -> None:
    conn, transport, closed = make(Flusher(0.0), max_queue_bytes=4096)
    transport.writable.clear()
    conn.push(b"x" * 100)
    await asyncio.sleep(0.01)
    for _ in range(50):
        conn.push(b"y" * 100)
    assert closed == [errors.SLOW_CONSUMER]
    await until(lambda: transport.closed is not None)
    assert transport.closed == (errors.SLOW_CONSUMER.code, errors.SLOW_CONSUMER.reason)
    assert conn.closed and conn.queued_bytes == 0


async def test_a_failed_send_closes_the_connection_without_a_reason() -> None:
    conn, transport, closed = make(Flusher(0.0))
    transport.fail = ConnectionResetError()
    conn.push(b"x")
    await until(lambda: closed)
    assert closed == [None] and conn.closed
    conn.push(b"ignored")
    assert conn.queued_bytes == 0


async def test_disconnect_sends_what_is_queued_then_the_close_code() -> None:
    conn, transport, closed = make(Flusher(0.05))
    conn.push(b"last words")
    conn.disconnect(errors.SERVICE_RESTART)
    # The transport took both at once: the close finished in the call, no task was needed.
    assert conn.close_task is None
    assert transport.sent == ["last words"]
    assert transport.closed == (errors.SERVICE_RESTART.code, errors.SERVICE_RESTART.reason)
    assert closed == [errors.SERVICE_RESTART]


async def test_disconnect_waits_for_a_send_held_by_backpressure() -> None:
    conn, transport, _ = make(Flusher(0.0))
    transport.writable.clear()
    conn.push(b"1")
    await asyncio.sleep(0.01)
    conn.push(b"2")
    conn.disconnect(errors.SERVICE_RESTART)
    asyncio.get_running_loop().call_later(0.05, transport.writable.set)
    assert conn.close_task is not None
    await asyncio.wait_for(conn.close_task, 2)
    assert transport.sent == ["1", "2"]
    assert transport.closed is not None and transport.closed[0] == errors.SERVICE_RESTART.code
