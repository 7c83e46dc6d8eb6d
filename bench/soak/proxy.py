"""The soak's load balancer: a small asyncio TCP proxy on 127.0.0.1 in front of the replicas.

Why not the compose file's nginx: its per-address limits (5 websocket handshakes/s, a connection
cap) would refuse 2,000 clients that all come from 127.0.0.1. This proxy keeps what the soak needs
of it: websockets go to the ready replica holding the fewest connections (nginx's `least_conn`,
as in config/nginx/nginx.conf), a replica whose port refuses is skipped, and a replica that says it
is not ready (`/api/ready` 503, as while it drains) gets no new connections (a Kubernetes
readiness probe; when no replica is ready, any that accepts is used). A replica that dies takes its
connections with it: the proxy closes the client side, so clients see what they would see behind
a real balancer and reconnect "elsewhere".

Run: `python -m bench.soak.proxy --port P --backends 8001,8002,8003` (the soak starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

READY_EVERY = 0.5  # seconds between readiness probes
CONNECT_TIMEOUT = 2.0
CHUNK = 256 * 1024


class Balancer:
    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.active = dict.fromkeys(backends, 0)
        self.ready = set(backends)

    def candidates(self) -> list[int]:
        """Ready replicas first, fewest connections first; the others after them (fallback)."""
        order = sorted(self.backends, key=lambda port: (port not in self.ready, self.active[port]))
        return order

    async def probe(self) -> None:
        """Readiness of every replica, forever (an HTTP/1.0 GET: no client library needed)."""
        while True:
            for port in self.backends:
                ok = await _ready(port)
                if ok:
                    self.ready.add(port)
                else:
                    self.ready.discard(port)
            await asyncio.sleep(READY_EVERY)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for port in self.candidates():
            with contextlib.suppress(TimeoutError, OSError):
                upstream = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT)
                break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        self.active[port] += 1
        try:
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            self.active[port] -= 1


async def _ready(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(b"GET /api/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), 2.0)
        return b" 200 " in line
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                  up_writer: asyncio.StreamWriter) -> None:
    """Copy both ways until either side ends; then close both (a dead replica drops its clients)."""
    tasks = [asyncio.create_task(_pipe(reader, up_writer)), asyncio.create_task(_pipe(up_reader, writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve(port: int, backends: list[int]) -> None:
    balancer = Balancer(backends)
    probing = asyncio.create_task(balancer.probe())
    server = await asyncio.start_server(balancer.handle, "127.0.0.1", port, backlog=4096)
    print(f"proxy listening on 127.0.0.1:{port} -> {backends}", flush=True)
    async with server:
        try:
            await server.serve_forever()
        finally:
            probing.cancel()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backends", required=True, help="comma-separated replica ports")
    args = parser.parse_args()
    backends = [int(p) for p in args.backends.split(",")]
    try:
        import uvloop

        uvloop.run(serve(args.port, backends))
    except ImportError:
        asyncio.run(serve(args.port, backends))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
