"""`GET /ws`: adapt a Starlette websocket to the realtime node (auth, Origin, frame size).

Authentication: `Authorization: Bearer` on the upgrade (bots, API clients), the session cookie
when the Origin is allowed (the PWA), or a first `auth` frame within AUTH_TIMEOUT (browsers that
hold a token). A foreign Origin is accepted only to be closed at once with 4004: that stops
cross-site websocket hijacking while telling a legitimate misconfigured client why.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from realtime import errors, protocol
from realtime.connection import ConnUser
from realtime.errors import ReplyError
from server.auth.principal import ACCESS_COOKIE, bearer_token
from server.observability.logging import get_logger
from server.resources import resources_of

log = get_logger("vonix.ws")


class StarletteTransport:
    """Sends go straight to the ASGI `send` callable: Starlette's `WebSocket.send` only re-checks
    its state machine, and this is the fan-out hot path (one call per subscriber per frame)."""

    __slots__ = ("_send", "websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._send = getattr(websocket, "_send", None) or websocket.send

    def send(self, data: str) -> Coroutine[Any, Any, None]:
        return self._send({"type": "websocket.send", "text": data})  # type: ignore[no-any-return]

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)


def origin_allowed(websocket: WebSocket, allowed: list[str], public_url: str) -> bool:
    origin = websocket.headers.get("origin")
    if origin is None:
        return True  # not a browser: bots and API clients send no Origin
    parsed = urlsplit(origin)
    host = websocket.headers.get("host", "")
    if parsed.netloc and parsed.netloc == host:
        return True
    normalised = origin.rstrip("/")
    return normalised in {o.rstrip("/") for o in allowed} or normalised == public_url.rstrip("/")


async def websocket_endpoint(websocket: WebSocket) -> None:
    resources = resources_of(websocket)
    node = resources.node
    settings = resources.settings
    if not origin_allowed(websocket, settings.allowed_origins, settings.public_url):
        await websocket.accept()
        await websocket.close(errors.FORBIDDEN_ORIGIN.code, errors.FORBIDDEN_ORIGIN.reason)
        return
    if resources.lifecycle.draining or node.draining:
        await websocket.accept()
        await websocket.close(errors.SERVICE_RESTART.code, errors.SERVICE_RESTART.reason)
        return

    user: ConnUser | None = None
    failure: str | None = None
    token = bearer_token(websocket) or websocket.cookies.get(ACCESS_COOKIE)
    if token:
        try:
            user = await resources.hooks.authenticate(token)
        except ReplyError as exc:
            failure = exc.message
    await websocket.accept()
    conn = node.open(StarletteTransport(websocket))
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
        asyncio.get_running_loop().call_later(
            settings.ws_auth_timeout, lambda: conn.user is None and conn.disconnect(errors.AUTH_TIMEOUT))

    max_frame = protocol.MAX_FRAME_BYTES
    try:
        while not conn.closed:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            if len(data) > max_frame and (isinstance(data, bytes) or len(data.encode()) > max_frame):
                conn.push(protocol.error_reply(None, errors.MESSAGE_TOO_LARGE,
                                               f"frames are limited to {max_frame} bytes"))
                conn.disconnect(errors.FRAME_TOO_LARGE)
                break
            await node.handle(conn, data)
    except Exception as exc:  # the peer vanished mid-receive
        log.debug("ws_receive_ended", conn_id=conn.conn_id, error=exc.__class__.__name__)
    finally:
        if conn.close_task is not None:  # let the close frame with our code go out before returning
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.close_task), timeout=2.0)
        await node.cleanup(conn)
        log.info("ws_disconnected", conn_id=conn.conn_id, user_id=conn.user.user_id if conn.user else None)


routes = [WebSocketRoute("/ws", websocket_endpoint, name="ws")]
