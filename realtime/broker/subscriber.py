"""The broker's Redis subscriber connection: RESP read straight from the socket.

Why not redis-py's `PubSub.get_message`: it was the most expensive step per message left on a
busy replica (profiled in the rooms benchmark: a timeout context, a health check, two parser
layers and a dict per message). This connection is an `asyncio.Protocol` that feeds what the
socket delivers to hiredis (the C parser redis-py uses too) and hands every pub/sub message to the
broker's callback in the same call, however many a read brought: no task switch, no timer and no
dict per message. It only subscribes, so it needs no request/response bookkeeping beyond the few
commands of its handshake (AUTH, CLIENT SETNAME) and a PING when the line has been quiet.

Connection settings (host and port or unix socket path, user, password, TLS) are read from the
redis-py client the server already built from `REDIS_URL`, so the URL means the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from realtime.logs import get_logger

log = get_logger("vonix.broker")

Deliver = Callable[[bytes, bytes], None]
Confirm = Callable[[bytes], None]


class SubscriberError(ConnectionError):
    """The subscriber connection failed or was refused (a reconnect follows)."""


class SubscriberProtocol(asyncio.Protocol):
    """Parses pushes as they arrive; `lost` resolves when the connection ends for any reason."""

    def __init__(self, deliver: Deliver, confirm: Confirm, *, dropped: Confirm | None = None,
                 refused: Callable[[Any], None] | None = None) -> None:
        self.deliver = deliver
        self.confirm = confirm
        # Sharded pub/sub (Redis Cluster): `dropped(channel)` when the server ends a shard
        # subscription itself (its slot moved to another node), `refused(error)` for an error reply
        # nobody waits for (an SSUBSCRIBE sent to a node that no longer owns the slot: MOVED).
        self.dropped = dropped
        self.refused = refused
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reads = 0  # data_received calls: the quiet-line PING looks for progress
        self._reader = hiredis.Reader()
        self._replies: deque[asyncio.Future[Any]] = deque()  # handshake commands and PINGs, in order

    # --- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reads += 1
        reader = self._reader
        reader.feed(data)
        deliver = self.deliver
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:  # garbage on the line: drop the connection
                self._fail(SubscriberError(f"protocol error: {exc}"))
                return
            if reply is False:
                break
            if type(reply) is list:
                kind = reply[0]
                if kind == b"message" or kind == b"smessage":
                    try:
                        deliver(reply[1], reply[2])
                    except Exception:  # one bad message must not cost the others their delivery
                        log.exception("broker_delivery_failed")
                    continue
                if kind == b"subscribe" or kind == b"ssubscribe":
                    self.confirm(reply[1])
                    continue
                if kind == b"sunsubscribe" and self.dropped is not None:
                    self.dropped(reply[1])
                    continue
                if kind == b"pong" and self._replies:  # PING while subscribed
                    self._answer(reply)
                continue
            self._answer(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        error = SubscriberError(f"connection lost: {exc}" if exc else "connection closed by Redis")
        for waiter in self._replies:
            if not waiter.done():
                waiter.set_exception(error)
        self._replies.clear()
        if not self.lost.done():
            self.lost.set_result(None)

    # --- commands --------------------------------------------------------------------------------
    def send(self, *args: str | bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            # hiredis.pyi types the argument as a 1-tuple (`Tuple[...]` without `, ...`)
            self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]

    async def call(self, *args: str | bytes, within: float) -> Any:
        """A command with one reply (handshake, PING); raises SubscriberError on an error reply."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies.append(waiter)
        self.send(*args)
        try:
            reply = await asyncio.wait_for(waiter, within)
        except TimeoutError:
            raise SubscriberError(f"no reply to {args[0]!r} within {within:g} s") from None
        if isinstance(reply, hiredis.ReplyError):
            raise SubscriberError(f"{args[0]!r} refused: {reply}")
        return reply

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _answer(self, reply: Any) -> None:
        if self._replies:
            waiter = self._replies.popleft()
            if not waiter.done():
                waiter.set_result(reply)
        elif self.refused is not None and isinstance(reply, hiredis.ReplyError):
            self.refused(reply)

    def _fail(self, error: Exception) -> None:
        self.connection_lost(error)
        self.close()


async def open_subscriber(client: Any, deliver: Deliver, confirm: Confirm, *, name: str = "vonix-subscriber",
                          within: float = 5.0, address: tuple[str, int] | None = None,
                          dropped: Confirm | None = None,
                          refused: Callable[[Any], None] | None = None) -> SubscriberProtocol:
    """Connect and authenticate with the settings of a redis-py client (`client.connection_pool`);
    `address` (host, port) names another node with the same credentials (a cluster's shard)."""
    kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    loop = asyncio.get_running_loop()

    def factory() -> SubscriberProtocol:
        return SubscriberProtocol(deliver, confirm, dropped=dropped, refused=refused)

    connect_timeout = kwargs.get("socket_connect_timeout") or within
    try:
        if address is not None:
            connecting = loop.create_connection(factory, address[0], address[1], ssl=_tls(client, kwargs))
        elif kwargs.get("path"):
            connecting = loop.create_unix_connection(factory, kwargs["path"])
        else:
            connecting = loop.create_connection(factory, kwargs.get("host", "localhost"), kwargs.get("port", 6379),
                                                ssl=_tls(client, kwargs))
        _, protocol = await asyncio.wait_for(connecting, connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise SubscriberError(f"cannot connect: {exc.__class__.__name__}: {exc}") from exc
    try:
        password = kwargs.get("password")
        if password:
            username = kwargs.get("username")
            await protocol.call(*(("AUTH", username, password) if username else ("AUTH", password)), within=within)
        await protocol.call("CLIENT", "SETNAME", kwargs.get("client_name") or name, within=within)
    except BaseException:
        protocol.close()
        raise
    return protocol


def _tls(client: Any, kwargs: dict[str, Any]) -> ssl.SSLContext | None:
    if "SSL" not in client.connection_pool.connection_class.__name__:
        return None
    context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"))
    requirement = kwargs.get("ssl_cert_reqs", "required")
    if requirement in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif kwargs.get("ssl_check_hostname") is False:
        context.check_hostname = False
    return context


async def ping_while_quiet(protocol: SubscriberProtocol, *, every: float, answer_within: float) -> None:
    """A half-open connection reads nothing forever: PING it when nothing arrived for `every` seconds,
    and end it if Redis does not answer in time (the caller reconnects)."""
    seen = -1
    while not protocol.lost.done():
        await asyncio.sleep(every)
        if protocol.reads != seen:
            seen = protocol.reads
            continue
        try:
            await protocol.call("PING", within=answer_within)
        except SubscriberError:
            protocol.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(protocol.lost)
            return


async def hold(protocol: SubscriberProtocol, *, every: float, answer_within: float) -> None:
    """Wait as long as the connection lives, PINGing it when quiet; raises SubscriberError when it
    ends (the caller's supervisor reconnects)."""
    pinger = asyncio.create_task(ping_while_quiet(protocol, every=every, answer_within=answer_within))
    try:
        await protocol.lost
    finally:
        pinger.cancel()
    raise SubscriberError("the subscriber connection ended")
