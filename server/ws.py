"""`GET /ws`: adapt a raw ASGI websocket to the realtime node (auth, Origin, frame size).

Authentication: `Authorization: Bearer` on the upgrade (bots, API clients), the session cookie
when the Origin is allowed (the PWA), or a first `auth` frame within AUTH_TIMEOUT (browsers that
hold a token). A foreign Origin is accepted only to be closed at once with 4004: that stops
cross-site websocket hijacking while telling a legitimate misconfigured client why. An upgrade
without credentials is a guest: it takes one of its address's `WS_MAX_GUESTS_PER_IP` slots on this
replica (`server/guest_limit.py`) until it signs in or goes, and is closed with 4006 when none is
left — a guest following `status:` outlives the auth timeout, so this is what bounds them.

This is a plain ASGI app, served ahead of Starlette's middleware stack (`server/ws_entry.py`):
an idle connection is a coroutine suspended in `receive()` for hours, and every frame of the
chain that leads to it stays alive as long. So the long-lived frame here holds only what the
receive loop needs; the handshake (headers, token, Starlette helpers) lives in `_admit`, whose
frame is gone once the connection is open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, cast
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from realtime import errors, protocol
from realtime.connection import Connection, ConnUser
from realtime.errors import Disconnect, ReplyError
from server.auth.principal import ACCESS_COOKIE, bearer_token
from server.guest_limit import GuestSlot
from server.observability.logging import get_logger
from server.resources import Resources
from server.ws_protocol import OPENED, WRITE_TEXT

log = get_logger("vonix.ws")
PATH = "/ws"
# What Starlette's accept() sends.
_ACCEPT: dict[str, Any] = {"type": "websocket.accept", "subprotocol": None, "headers": []}
def _cannot_write(data: bytes) -> bool:
    return False  # no fast path on this server: every frame takes the ASGI `send`


class AsgiTransport:
    """The fan-out hot path (one call per subscriber per frame): `write` goes to the socket through
    the server's `write_text` extension when it offers one (`server/ws_protocol.py`); `send` is
    the ASGI way, for backpressure, closing, and servers without the extension."""

    __slots__ = ("_send", "write")

    def __init__(self, send: Send, write: Callable[[bytes], bool] | None = None) -> None:
        # Starlette types `Send` as returning an Awaitable; servers' (uvicorn's) are coroutine
        # functions, and `Connection._flush` drives the coroutine itself (`realtime.transport`).
        self._send = cast(Callable[[Message], Coroutine[Any, Any, None]], send)
        # The server's own `write_text` itself, not a wrapper: one call per subscriber per frame.
        self.write: Callable[[bytes], bool] = write if write is not None else _cannot_write

    def send(self, data: bytes) -> Coroutine[Any, Any, None]:
        return self._send({"type": "websocket.send", "text": data.decode()})

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # already closed, or the peer is gone
            await self._send({"type": "websocket.close", "code": code, "reason": reason or ""})


def origin_allowed(headers: Headers, allowed: list[str], public_url: str) -> bool:
    origin = headers.get("origin")
    if origin is None:
        return True  # not a browser: bots and API clients send no Origin
    parsed = urlsplit(origin)
    host = headers.get("host", "")
    if parsed.netloc and parsed.netloc == host:
        return True
    normalised = origin.rstrip("/")
    return normalised in {o.rstrip("/") for o in allowed} or normalised == public_url.rstrip("/")


async def _accept(receive: Receive, send: Send) -> None:
    """Starlette's `accept()`: wait for the `websocket.connect` message, then accept."""
    message = await receive()
    if message["type"] != "websocket.connect":
        raise RuntimeError(f'Expected ASGI message "websocket.connect", but got {message["type"]!r}')
    await send(dict(_ACCEPT))


async def _refuse(receive: Receive, send: Send, reason: Disconnect) -> None:
    await _accept(receive, send)
    await send({"type": "websocket.close", "code": reason.code, "reason": reason.reason})


async def _admit(scope: Scope, receive: Receive, send: Send,
                 resources: Resources) -> tuple[Connection, GuestSlot | None] | None:
    """Origin, drain, token and guest-cap checks, accept, open the node connection; None when
    refused. A guest's slot comes back with its connection, for the receive loop to release."""
    node, hooks = resources.node, resources.hooks
    assert node is not None and hooks is not None  # set by Resources.build
    settings = resources.settings
    connection = HTTPConnection(scope)  # header and cookie parsing exactly as Starlette's WebSocket does
    if not origin_allowed(connection.headers, settings.allowed_origins, settings.public_url):
        await _refuse(receive, send, errors.FORBIDDEN_ORIGIN)
        return None
    if resources.lifecycle.draining or node.draining:
        await _refuse(receive, send, errors.SERVICE_RESTART)
        return None

    user: ConnUser | None = None
    failure: str | None = None
    token = bearer_token(connection) or connection.cookies.get(ACCESS_COOKIE)
    if token:
        try:
            user = await hooks.authenticate(token)
        except ReplyError as exc:
            failure = exc.message
    slot: GuestSlot | None = None
    if not token:  # a guest: counted before the accept, refused before it can subscribe
        assert resources.guests is not None  # set by Resources.build
        slot = resources.guests.admit(scope)
        if slot is None:
            log.debug("ws_guest_refused")  # the counter has the numbers; one line per refusal would be a flood
            await _refuse(receive, send, errors.TOO_MANY_CONNECTIONS)
            return None
    try:
        await _accept(receive, send)
        conn = node.open(AsgiTransport(send, scope.get("extensions", {}).pop(WRITE_TEXT, None)))
    except BaseException:
        if slot is not None:  # the peer left during the handshake
            slot.release()
        raise
    log.info("ws_connected", conn_id=conn.conn_id, user_id=user.user_id if user else None)
    if failure is not None:
        conn.push(protocol.error_reply(None, errors.INVALID_TOKEN, failure))
        conn.disconnect(errors.BAD_AUTH)
    elif user is not None:
        refused = await node.identify(conn, user)
        if refused is not None:
            conn.push(protocol.error_reply(None, errors.FORBIDDEN, refused.reason))
            conn.disconnect(refused)
    else:
        def auth_timeout() -> None:
            if conn.user is None and not conn.subscriptions:  # a guest following public channels stays
                conn.disconnect(errors.AUTH_TIMEOUT)

        asyncio.get_running_loop().call_later(settings.ws_auth_timeout, auth_timeout)
    return conn, slot


async def _answer_error(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """What Starlette's exception middleware did for this route: an exception with a registered
    handler (AppError, HTTPException) gets the handler's response (before the accept: an HTTP
    denial); any other goes up to uvicorn, which logs it and answers 500."""
    handlers = scope["app"].exception_handlers
    handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers and cls is not Exception), None)
    if handler is None:
        raise exc
    response = await handler(WebSocket(scope, receive, send), exc)
    if response is not None:
        await response(scope, receive, send)
    exc.__traceback__ = None


async def websocket_app(scope: Scope, receive: Receive, send: Send) -> None:
    """One websocket connection, from the upgrade to the cleanup (`scope["app"]` is the app)."""
    resources: Resources = scope["app"].state.vonix
    # Told once the connection is through its first exchange (its first frame handled, or refused),
    # so the accept loop opens the next waiting connection (server/eager_accept.py).
    opened: Callable[[], None] | None = scope.get("extensions", {}).pop(OPENED, None)
    try:
        admitted = await _admit(scope, receive, send, resources)
    except Exception as exc:
        if opened is not None:
            opened()
        await _answer_error(scope, receive, send, exc)
        return
    if admitted is None:
        if opened is not None:
            opened()
        return
    conn, slot = admitted
    del admitted
    # Everything the connection needs from the handshake was read in `_admit`. uvicorn keeps the
    # scope for the connection's life: release its header list (~1 KiB a connection) with it.
    scope["headers"] = []
    del scope
    node = resources.node
    assert node is not None  # set by Resources.build
    max_frame = protocol.MAX_FRAME_BYTES
    try:
        while not conn.closed:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                break
            if kind != "websocket.receive":
                raise RuntimeError(f'Expected "websocket.receive" or "websocket.disconnect", but got {kind!r}')
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > max_frame and (isinstance(data, bytes) or len(data.encode()) > max_frame):
                conn.push(protocol.error_reply(None, errors.MESSAGE_TOO_LARGE,
                                               f"frames are limited to {max_frame} bytes"))
                conn.disconnect(errors.FRAME_TOO_LARGE)
                break
            await node.handle(conn, data)
            if opened is not None:
                opened()
                opened = None
            # Only an `auth` frame sets the user (node.identify, before handle returns and with no
            # await between): from here on the connection is a member's, under the per-user cap.
            if slot is not None and conn.user is not None:
                slot.release()
                slot = None
    except Exception as exc:  # the peer vanished mid-receive
        log.debug("ws_receive_ended", conn_id=conn.conn_id, error=exc.__class__.__name__)
    finally:
        if opened is not None:
            opened()
        if slot is not None:
            slot.release()
        closing = conn.close_task
        if closing is not None and not closing.done():  # let the close frame with our code go out first
            await asyncio.wait((closing,), timeout=2.0)
        await node.cleanup(conn)
        log.info("ws_disconnected", conn_id=conn.conn_id, user_id=conn.user.user_id if conn.user else None)
