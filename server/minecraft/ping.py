"""Ask one game server how it is, with the maintained `mcstatus` library.

Java: Server List Ping (handshake, status request, then the ping/pong echo on a second
connection for the latency); a Java address on the default port with a host name first looks for
the `_minecraft._tcp` SRV record, as the game does. Bedrock: RakNet's unconnected ping over UDP.

`query` never raises (except on cancellation): whatever a server does (answers garbage, hangs,
closes early, is not there), the answer is a `PingResult`, offline with a reason code from
`REASONS`. The whole query is bounded by one deadline (`MC_STATUS_TIMEOUT`): a server that drips
bytes slowly cannot keep the poller waiting longer than that.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import ipaddress
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from mcstatus import BedrockServer, JavaServer

from server.minecraft import motd
from server.observability.logging import get_logger

log = get_logger("vonix.minecraft.ping")

REASONS = ("timeout", "refused", "bad_response", "closed", "unreachable")
DEFAULT_PORTS = {"java": 25565, "bedrock": 19132}
FAVICON_MAX_BYTES = 64 * 1024
FAVICON_SIZE = 64
SAMPLE_MAX = 100
NIL_UUID = "00000000-0000-0000-0000-000000000000"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class PingResult:
    online: bool
    reason: str | None = None  # one of REASONS (or "breaker_open", set by the poller) when offline
    players_online: int = 0
    players_max: int = 0
    sample: list[str] = field(default_factory=list)
    version: str | None = None
    motd_raw: Any = None  # the description as sent (a § string or a chat component)
    motd_html: str = ""
    motd_text: str = ""
    latency_ms: float | None = None
    favicon: bytes | None = None  # a validated PNG, or None

    @classmethod
    def offline(cls, reason: str) -> PingResult:
        return cls(online=False, reason=reason)


def valid_png(data: bytes) -> bool:
    """A 64x64 PNG of at most 64 KiB: signature, an IHDR first with a good CRC, an IEND last."""
    if len(data) > FAVICON_MAX_BYTES or len(data) < 8 + 25 + 12 or not data.startswith(PNG_SIGNATURE):
        return False
    length, kind = struct.unpack(">I4s", data[8:16])
    if kind != b"IHDR" or length != 13:
        return False
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(kind + body) != crc:
        return False
    width, height = struct.unpack(">II", body[:8])
    return (width, height) == (FAVICON_SIZE, FAVICON_SIZE) and data.endswith(b"IEND\xaeB`\x82")


def decode_favicon(value: Any) -> bytes | None:
    """The server's `favicon` (`data:image/png;base64,…`) as PNG bytes, or None when not valid."""
    prefix = "data:image/png;base64,"
    if not isinstance(value, str) or not value.startswith(prefix) or len(value) > FAVICON_MAX_BYTES * 2:
        return None
    try:
        data = base64.b64decode(value[len(prefix):].replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if valid_png(data) else None


def favicon_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not a player count")
    return max(0, min(value, 10_000_000))


def _sample(raw: Any) -> list[str]:
    """Player names from the status sample; hover-text lines (the nil UUID) are left out."""
    names: list[str] = []
    if not isinstance(raw, list):
        return names
    for entry in raw[:SAMPLE_MAX]:
        if not isinstance(entry, dict) or entry.get("id") == NIL_UUID:
            continue
        name = motd.plain(entry.get("name"), 32) if isinstance(entry.get("name"), str) else ""
        if name:
            names.append(name)
    return names


def java_result(raw: Any, latency_ms: float | None) -> PingResult:
    """A status response's JSON as a result; raises ValueError when it is not a status."""
    if not isinstance(raw, dict) or not isinstance(raw.get("players"), dict | type(None)):
        raise ValueError("not a status object")
    players = raw.get("players") or {}
    version = raw.get("version")
    rendered = motd.render(raw.get("description", ""))
    return PingResult(
        online=True,
        players_online=_count(players.get("online", 0)),
        players_max=_count(players.get("max", 0)),
        sample=_sample(players.get("sample")),
        version=(motd.plain(version.get("name")) or None) if isinstance(version, dict) else None,
        motd_raw=raw.get("description", ""),
        motd_html=rendered.html,
        motd_text=rendered.text,
        latency_ms=round(latency_ms, 1) if latency_ms is not None else None,
        favicon=decode_favicon(raw.get("favicon")),
    )


def reason_of(exc: BaseException) -> str:
    """The reason code for a failed query (see REASONS)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | asyncio.IncompleteReadError | EOFError):
        return "closed"
    if isinstance(exc, socket.gaierror):
        return "unreachable"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return "unreachable"
        if exc.errno == errno.ECONNREFUSED:
            return "refused"
        if exc.errno is not None:
            return "unreachable"
        text = str(exc)
        # mcstatus: the peer closed before (or while) answering
        if text.startswith(("Server did not respond", "Server stopped responding")):
            return "closed"
        return "bad_response"
    return "bad_response"  # ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError, ...


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _java(host: str, port: int, seconds: float) -> PingResult:
    server = JavaServer(host, port, timeout=seconds)
    if port == DEFAULT_PORTS["java"] and not _is_ip(host):
        try:  # the SRV record, as the game looks it up; none (or no DNS): host:25565
            server = await asyncio.wait_for(JavaServer.async_lookup(host, timeout=seconds / 2), seconds / 2)
        except Exception:
            server = JavaServer(host, port, timeout=seconds)
    status = await server.async_status(tries=1)
    latency: float | None = status.latency
    try:  # the ping/pong echo (vanilla closes after the pong); without it, the status' round trip
        latency = await server.async_ping(tries=1)
    except (OSError, ValueError, struct.error, TimeoutError):
        pass
    return java_result(status.raw, latency)


async def _bedrock(host: str, port: int, seconds: float) -> PingResult:
    status = await BedrockServer(host, port, timeout=seconds).async_status(tries=1)
    rendered = motd.render(status.motd.raw, bedrock=True)
    return PingResult(
        online=True,
        players_online=_count(status.players.online),
        players_max=_count(status.players.max),
        version=motd.plain(status.version.name) or None,
        motd_raw=status.motd.raw,
        motd_html=rendered.html,
        motd_text=rendered.text,
        latency_ms=round(status.latency, 1),
    )


async def query(host: str, port: int, edition: str, seconds: float) -> PingResult:
    """The server's status, or offline with a reason; never raises (but on cancellation)."""
    started = time.perf_counter()
    try:
        operation = _bedrock(host, port, seconds) if edition == "bedrock" else _java(host, port, seconds)
        return await asyncio.wait_for(operation, seconds)
    except Exception as exc:  # anything a broken server can provoke in the library (not a cancellation)
        reason = reason_of(exc)
        log.info("mc_ping_failed", edition=edition, reason=reason, error=exc.__class__.__name__,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return PingResult.offline(reason)
