"""Stand-in Minecraft servers for tests, on 127.0.0.1 (asyncio).

`JavaStandin` speaks Server List Ping: the handshake, then any number of status requests
(answered with the JSON built from its attributes) and pings (echoed), until the client closes.
`mode` makes it misbehave: `garbage` answers the status with a framed packet that is not JSON,
`hang` reads and never answers, `close` closes right after the handshake. `BedrockStandin`
answers RakNet unconnected pings over UDP. Attributes may change between polls; `connections` /
`pings` count what it saw (a circuit breaker's open state means no new connections).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import struct
from typing import Any

MAGIC = bytes.fromhex("00ffff00fefefefefdfdfdfd12345678")


def png(size: int = 64, colour: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    """A small valid PNG (64x64 by default) for favicons."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _packet(packet_id: int, payload: bytes) -> bytes:
    body = _varint(packet_id) + payload
    return _varint(len(body)) + body


def _string(text: str) -> bytes:
    data = text.encode()
    return _varint(len(data)) + data


async def _read_varint(reader: asyncio.StreamReader) -> int:
    value = 0
    for shift in range(0, 35, 7):
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise ValueError("varint too long")


class JavaStandin:
    def __init__(self, *, motd: Any = "§6Vonix §lSurvival", online: int = 3, max_players: int = 20,
                 sample: list[str] | None = None, version: str = "Paper 1.21.4", favicon: bytes | None = None,
                 mode: str = "ok") -> None:
        self.motd = motd
        self.online = online
        self.max_players = max_players
        self.sample = ["Steve", "Alex"] if sample is None else sample
        self.version = version
        self.favicon = favicon
        self.mode = mode
        self.connections = 0
        self.pings = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def status_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "version": {"name": self.version, "protocol": 769},
            "players": {"online": self.online, "max": self.max_players,
                        "sample": [{"name": name, "id": f"00000000-0000-0000-0000-{i + 1:012d}"}
                                   for i, name in enumerate(self.sample)]},
            "description": self.motd,
        }
        if self.favicon is not None:
            status["favicon"] = "data:image/png;base64," + base64.b64encode(self.favicon).decode()
        return status

    async def start(self) -> JavaStandin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> JavaStandin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self._talk(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        length = await _read_varint(reader)
        await reader.readexactly(length)  # the handshake (id 0, protocol, host, port, next state)
        if self.mode == "close":
            return
        while True:
            length = await _read_varint(reader)
            packet = await reader.readexactly(length)
            if self.mode == "hang":  # read on, answer nothing, until the client gives up
                while await reader.read(4096):
                    pass
                return
            if packet[:1] == b"\x00":  # status request
                if self.mode == "garbage":
                    writer.write(_packet(0, _string("<html>this is not a Minecraft server{")))
                else:
                    writer.write(_packet(0, _string(json.dumps(self.status_json()))))
            elif packet[:1] == b"\x01":  # ping: echo the token
                self.pings += 1
                writer.write(_packet(1, packet[1:9]))
            await writer.drain()


class _BedrockProtocol(asyncio.DatagramProtocol):
    def __init__(self, standin: BedrockStandin) -> None:
        self.standin = standin
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.standin.pings += 1
        if data[:1] != b"\x01" or len(data) < 33 or self.transport is None:
            return
        if self.standin.mode == "hang":
            return
        info = ";".join(["MCPE", self.standin.motd, "766", self.standin.version, str(self.standin.online),
                         str(self.standin.max_players), "1234567890", "Bedrock level", "Survival", "1", "19132",
                         "19133"]).encode()
        if self.standin.mode == "garbage":
            self.transport.sendto(b"\x1c\x00garbage", addr)
            return
        reply = b"\x1c" + data[1:9] + struct.pack(">q", 1234567890) + MAGIC + struct.pack(">H", len(info)) + info
        self.transport.sendto(reply, addr)


class BedrockStandin:
    def __init__(self, *, motd: str = "§aBedrock §bVonix", online: int = 5, max_players: int = 30,
                 version: str = "1.21.50", mode: str = "ok") -> None:
        self.motd = motd
        self.online = online
        self.max_players = max_players
        self.version = version
        self.mode = mode
        self.pings = 0
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> BedrockStandin:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _BedrockProtocol(self),
                                                           local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> BedrockStandin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def closed_port() -> int:
    """A local TCP port nobody listens on (connections are refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
