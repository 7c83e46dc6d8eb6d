"""REST fallback for clients that cannot hold a socket: same semantics as the websocket ops.

A REST publish counts as the `post` action (`RATE_LIMIT_ACTIONS`). Closed pages of a public
room's history (every message of the page exists already) are cached, tagged `channel:<name>` and
`history:<name>`; the newest page and private channels are always read from the database.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from realtime import errors, protocol
from realtime.errors import ReplyError
from server.auth.principal import principal_of, requires
from server.db.queries import messages as message_queries
from server.errors import AppError, Forbidden, NotFound, RateLimited, ServiceUnavailable, ValidationFailed
from server.jsonio import JSONResponse, query_int, read_json
from server.openapi import api
from server.openapi.responses import Closed, Open, Sender
from server.ratelimit import limit_action
from server.realtime_hooks import conn_user
from server.resources import resources_of


class PublishBody(BaseModel):
    data: Any
    nonce: str | None = Field(default=None, pattern=protocol.NONCE_PATTERN.pattern)


class Published(Closed):
    offset: int
    epoch: str


class MessageFrame(Open):
    """One message as the websocket pushes it (`protocol.message_push`); `data` is null once deleted.
    Amended messages carry more fields (edits, reactions)."""

    op: Literal["message"]
    channel: str
    offset: int
    epoch: str
    data: Any
    from_: Sender | None = Field(alias="from")
    ts: float


class History(Closed):
    """A keyset page; `next_before`/`next_since` are null at either end of the history."""

    channel: str
    offset: int
    epoch: str
    messages: list[MessageFrame]
    next_before: int | None
    next_since: int | None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "channel": "room:general", "offset": 2, "epoch": "a1b2c3", "next_before": None, "next_since": None,
        "messages": [{"op": "message", "channel": "room:general", "offset": 2, "epoch": "a1b2c3",
                      "data": {"text": "hello"}, "from": {"id": 42, "username": "alex"}, "ts": 1767366245.123}]}]})


class PresenceUser(Closed):
    id: int
    username: str


class Presence(Closed):
    channel: str
    users: list[PresenceUser]


def _channel(request: Request) -> str:
    channel = request.path_params["channel"]
    if len(channel) > protocol.MAX_CHANNEL_LENGTH or not protocol.CHANNEL_PATTERN.fullmatch(channel):
        raise ValidationFailed(details=[{"field": "channel", "code": "invalid_channel",
                                         "message": "channels look like namespace:name"}])
    return channel


def _reply_error(exc: ReplyError) -> AppError:
    if exc.code == errors.INVALID_DATA:
        return ValidationFailed(details=list(exc.details))
    if exc.code == "forbidden":
        return Forbidden(exc.message)
    if exc.code == "rate_limited":
        return RateLimited(exc.message, headers={"Retry-After": str(int((exc.retry_after or 1) + 0.999))})
    if exc.temporary:
        return ServiceUnavailable(exc.message, code=exc.code)
    return AppError(exc.message, code=exc.code, status=400)


async def _authorize(request: Request, channel: str, action: str) -> Any:
    resources = resources_of(request)
    user = conn_user(principal_of(request))
    if user.kind == "bot" and action not in user.scopes:
        raise Forbidden(f"This bot token lacks the {action!r} scope.")
    assert resources.hooks is not None  # set by Resources.build
    try:
        await resources.hooks.authorize(user, channel, action)
    except ReplyError as exc:
        raise _reply_error(exc) from None
    return user


@requires("messages.publish")
async def publish(request: Request) -> Response:
    channel = _channel(request)
    body = await read_json(request, PublishBody)
    if len(orjson.dumps(body.data)) > protocol.MAX_FRAME_BYTES:
        raise ValidationFailed(details=[{"field": "data", "code": "too_large",
                                         "message": f"at most {protocol.MAX_FRAME_BYTES} bytes"}])
    user = await _authorize(request, channel, "publish")
    await limit_action(request, principal_of(request), "post")
    node = resources_of(request).node
    assert node is not None  # set by Resources.build
    try:
        offset, epoch = await node.publish(channel, body.data, user=user, nonce=body.nonce)
    except ReplyError as exc:
        raise _reply_error(exc) from None
    return JSONResponse({"offset": offset, "epoch": epoch}, status_code=201)


@requires()
async def history(request: Request) -> Response:
    """Keyset pages: `since=N` (oldest first, after N) or `before=N` / nothing (newest first)."""
    channel = _channel(request)
    since = query_int(request, "since", 0, 2**62)
    before = query_int(request, "before", 1, 2**62)
    limit = query_int(request, "limit", 1, 200, default=50)
    await _authorize(request, channel, "history")
    resources = resources_of(request)
    hooks, node = resources.hooks, resources.node
    assert hooks is not None and node is not None  # set by Resources.build
    if hooks.persisted(channel):
        offset, epoch = await hooks.position(channel)
        frames = await _persisted_page(request, channel, epoch, offset, since, before, limit)
    else:
        position = await node.history.position(channel)
        offset, epoch = position.offset, position.epoch
        after = since if since is not None else max(0, (before or offset + 1) - 1 - limit)
        frames = await node.history.recover(channel, after, limit) or []
        if before is not None:
            frames = [f for f in frames if f[0] < before]
    messages = b",".join(frame for _, frame in frames)
    first = frames[0][0] if frames else None
    last = frames[-1][0] if frames else None
    body = b'{"channel":%s,"offset":%d,"epoch":%s,"messages":[%s],"next_before":%s,"next_since":%s}' % (
        orjson.dumps(channel), offset, orjson.dumps(epoch), messages,
        b"null" if first is None or first <= 1 else b"%d" % first,
        b"null" if last is None or last >= offset else b"%d" % last)
    return Response(body, media_type="application/json")


def _page_frames(frames: list[tuple[int, bytes]]) -> list[list[Any]]:
    return [[offset, frame.decode()] for offset, frame in frames]


def _page_value(data: list[list[Any]]) -> list[tuple[int, bytes]]:
    return [(offset, frame.encode()) for offset, frame in data]


async def _persisted_page(request: Request, channel: str, epoch: str, offset: int, since: int | None,
                          before: int | None, limit: int) -> list[tuple[int, bytes]]:
    resources = resources_of(request)
    hooks = resources.hooks
    assert hooks is not None  # set by Resources.build
    row = await hooks.channels.meta(channel)
    if row is None:  # deleted since `hooks.position` found it a moment ago
        raise NotFound("No such channel.", code="channel_not_found")

    async def load() -> list[tuple[int, bytes]]:
        if since is not None:
            stored = await message_queries.history_after(resources.db, row.id, since, limit)
        else:
            stored = list(reversed(await message_queries.history_before(resources.db, row.id, before, limit)))
        return await hooks.frames(channel, epoch, stored)

    closed = (since is not None and since + limit <= offset) or (since is None and before is not None
                                                                 and before <= offset + 1)
    cache = resources.cache
    if cache is None or not closed or row.kind != "room":
        return await load()
    pages = cache.namespaces.get("history") or cache.namespace("history", encode=_page_frames, decode=_page_value)
    page = f"{channel}:{'s' if since is not None else 'b'}{since if since is not None else before}:{limit}"
    return await cache.get(pages, page, load, tags=[f"channel:{channel}", f"history:{channel}"])  # type: ignore[no-any-return]


@requires()
async def presence(request: Request) -> Response:
    channel = _channel(request)
    await _authorize(request, channel, "presence")
    node = resources_of(request).node
    assert node is not None  # set by Resources.build
    users = await node.presence.users(channel)
    return JSONResponse({"channel": channel, "users": [u.as_dict() for u in users]})


routes = [
    api("/api/channels/{channel}/messages", publish, ["POST"], ok={201: Published},
        examples={"text": {"data": {"text": "hello"}, "nonce": "n-7f3a"}}),
    api("/api/channels/{channel}/messages", history, ["GET"], ok={200: History}),
    api("/api/channels/{channel}/presence", presence, ["GET"], ok={200: Presence}),
]
