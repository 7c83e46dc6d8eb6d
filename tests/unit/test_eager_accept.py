"""The serving loop takes every queued connection each time it looks (server/eager_accept.py).

uvloop on its own takes one per loop turn: on a busy replica the kernel's accept queue filled and
clients were dropped and retried seconds later. These run a real loop with real sockets, the loop
kept busy by callbacks, and count loop turns, not seconds.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from server.eager_accept import EagerServer, new_event_loop

BURST = 300


class Echo(asyncio.Protocol):
    made: list[asyncio.Transport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        Echo.made.append(self.transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


def run(loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _busy_turns(loop: asyncio.AbstractEventLoop, turns: list[int]) -> Callable[[], None]:
    """Keep the loop busy (a millisecond of work per turn) and count its turns."""
    def turn() -> None:
        turns[0] += 1
        started = time.perf_counter()
        while time.perf_counter() - started < 0.001:
            pass
        loop.call_soon(turn)
    return turn


async def _burst_accepted_within(turn_limit: int, port: int, loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(BURST)]  # queued by the kernel
    turns = [0]
    loop.call_soon(_busy_turns(loop, turns))
    while turns[0] < turn_limit and len(Echo.made) < BURST:
        await asyncio.sleep(0)
    made = len(Echo.made)
    if made == BURST:  # a connection taken this way is a normal transport
        clients[0].setblocking(False)
        await loop.sock_sendall(clients[0], b"ping")
        assert await asyncio.wait_for(loop.sock_recv(clients[0], 4), 5) == b"PING"
    for client in clients:
        client.close()
    for transport in Echo.made:
        transport.close()
    await asyncio.sleep(0.01)
    return made, turns[0]


def test_a_busy_loop_takes_the_whole_accept_queue_at_once() -> None:
    Echo.made = []
    loop = new_event_loop()

    async def main() -> None:
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024)
        assert isinstance(server, EagerServer) and server.is_serving()
        loop.limit_opening(BURST, 2.0)  # type: ignore[attr-defined]  # the limit has its own test below
        assert (server.opening_limit, server.opening_seconds) == (BURST, 2.0)  # a server already made
        made, turns = await _burst_accepted_within(20, server.sockets[0].getsockname()[1], loop)
        assert made == BURST, f"{made} of {BURST} connections accepted in {turns} loop turns"
        server.close()
        await server.wait_closed()
        assert not server.is_serving() and server.sockets == ()

    run(loop, main)


def test_plain_uvloop_takes_one_per_turn_which_is_why_this_exists() -> None:
    """The reference: if uvloop ever accepts eagerly itself, this fails and the module can go."""
    Echo.made = []
    loop = uvloop.new_event_loop()

    async def main() -> None:
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024)
        made, turns = await _burst_accepted_within(20, server.sockets[0].getsockname()[1], loop)
        assert made <= turns + 1 < BURST, (made, turns)
        server.close()
        await server.wait_closed()

    run(loop, main)


def test_servers_it_does_not_handle_go_to_uvloop_unchanged() -> None:
    loop = new_event_loop()

    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        server = await loop.create_server(Echo, sock=listener)  # a given socket: uvloop's own server
        assert not isinstance(server, EagerServer)
        server.close()

    run(loop, main)


def test_connections_open_a_bounded_number_at_a_time_first_come_first_served() -> None:
    """Accepted at once, but at most `opening_limit` between accept and their first exchange:
    the rest wait untouched, in arrival order, and each `opened` (or a silent connection's
    deadline) lets the next one in."""
    Echo.made = []
    loop = new_event_loop()

    async def main() -> None:
        loop.limit_opening(10, 0.3)  # type: ignore[attr-defined]  # the settings, before uvicorn's servers
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=1024)
        assert isinstance(server, EagerServer)
        port = server.sockets[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        arrival = [client.getsockname()[1] for client in clients]
        for _ in range(20):
            await asyncio.sleep(0)
        assert server.accepted == 40 and len(Echo.made) == 10 and server.waiting == 30

        def served() -> list[int]:
            return [transport.get_extra_info("peername")[1] for transport in Echo.made]

        assert served() == arrival[:10], "not first come, first served"
        for transport in Echo.made[:4]:
            loop.opened(transport)  # type: ignore[attr-defined]
            loop.opened(transport)  # told twice: counts once
        for _ in range(20):
            await asyncio.sleep(0)
        assert served() == arrival[:14] and server.waiting == 26 and server.most_opening == 10
        await asyncio.sleep(1.2)  # the silent ones stop counting after opening_seconds
        assert served() == arrival and server.waiting == 0 and server.most_opening == 10
        for client in clients:
            client.close()
        for transport in Echo.made:
            transport.close()
        server.close()
        await server.wait_closed()

    run(loop, main)


def test_a_connection_speaking_after_its_deadline_leaves_nothing_behind() -> None:
    """Its slot went at the deadline; told later, while another connection is being handed over,
    the server must neither count it again nor keep it (it used to keep it for good)."""
    Echo.made = []
    loop = new_event_loop()

    async def main() -> None:
        loop.limit_opening(10, 0.1)  # type: ignore[attr-defined]
        server = await loop.create_server(Echo, "127.0.0.1", 0, backlog=16)
        assert isinstance(server, EagerServer)
        port = server.sockets[0].getsockname()[1]
        first = socket.create_connection(("127.0.0.1", port))
        await asyncio.sleep(0.3)  # accepted, silent, its deadline passed
        assert len(Echo.made) == 1 and server.opening == 0
        late = Echo.made[0]
        hand_over = server._hand_over

        def hand_over_then_the_late_one_speaks(conn: socket.socket) -> None:
            hand_over(conn)  # this one's handover is under way now
            loop.opened(late)  # type: ignore[attr-defined]

        server._hand_over = hand_over_then_the_late_one_speaks  # type: ignore[method-assign]
        second = socket.create_connection(("127.0.0.1", port))
        try:
            for _ in range(20):
                await asyncio.sleep(0)
            assert len(Echo.made) == 2 and server.opening == 1  # the second, until its first exchange
            assert not server._told_early, "kept a connection that had already stopped counting"
            loop.opened(Echo.made[1])  # type: ignore[attr-defined]
            assert server.opening == 0
        finally:
            for client in (first, second):
                client.close()
            for transport in Echo.made:
                transport.close()
            server.close()
            await server.wait_closed()

    run(loop, main)
