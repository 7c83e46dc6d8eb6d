"""REST for changing a stored message: edit, delete, react; who reacted; the edit history.

Each change goes through the realtime node like the websocket ops (`edit`, `delete`, `react`,
`unreact`): it becomes an event on the channel with its own offset, which the answer returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from realtime import errors, protocol
from realtime.errors import ReplyError
from server.auth.principal import principal_of, requires
from server.db.tables import message_edits, messages, reactions, users
from server.errors import AppError, Forbidden, NotFound
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed
from server.ratelimit import limit_action
from server.realtime_hooks import conn_user
from server.resources import resources_of
from server.routes.channels import _authorize, _channel, _reply_error
from server.services.amendments import is_event


class EditBody(BaseModel):
    data: Any


class ReactionBody(BaseModel):
    emoji: str


def _offset(request: Request) -> int:
    offset = int(request.path_params["offset"])
    if not 1 <= offset <= protocol.MAX_OFFSET:
        raise NotFound("No such message in this channel.", code="message_not_found")
    return offset


def _error(exc: ReplyError) -> AppError:
    if exc.code == errors.MESSAGE_NOT_FOUND:
        return NotFound("No such message in this channel.", code="message_not_found")
    return _reply_error(exc)


async def _amend(request: Request, op: str, action: str, **fields: Any) -> Response:
    channel = _channel(request)
    user = conn_user(principal_of(request))
    if user.kind == "bot" and "publish" not in user.scopes:
        raise Forbidden("This bot token lacks the 'publish' scope.")
    await limit_action(request, principal_of(request), action)
    resources = resources_of(request)
    node, hooks = resources.node, resources.hooks
    assert node is not None and hooks is not None  # set by Resources.build
    try:  # a channel you may not read looks exactly like a message that does not exist
        await hooks.authorize(user, channel, "history")
    except ReplyError:
        raise NotFound("No such message in this channel.", code="message_not_found") from None
    try:
        offset, epoch = await node.amend(channel, op, _offset(request), user, **fields)
    except ReplyError as exc:
        raise _error(exc) from None
    return JSONResponse({"channel": channel, "offset": offset, "epoch": epoch})


@requires("messages.publish")
async def edit_message(request: Request) -> Response:
    body = await read_json(request, EditBody)
    return await _amend(request, "edit", "post", data=body.data)


@requires("messages.publish")
async def delete_message(request: Request) -> Response:
    return await _amend(request, "delete", "post")


@requires("messages.publish")
async def add_reaction(request: Request) -> Response:
    body = await read_json(request, ReactionBody)
    return await _amend(request, "react", "reaction", emoji=body.emoji)


@requires("messages.publish")
async def remove_reaction(request: Request) -> Response:
    emoji = request.query_params.get("emoji")
    if emoji is None:
        emoji = (await read_json(request, ReactionBody)).emoji
    return await _amend(request, "unreact", "reaction", emoji=emoji)


async def _message(request: Request) -> Any:
    """The live message at the path's offset in a channel the caller may read (404 otherwise)."""
    channel = _channel(request)
    target = _offset(request)
    try:
        await _authorize(request, channel, "history")
    except Forbidden:
        raise NotFound("No such message in this channel.", code="message_not_found") from None
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    row = await hooks.channels.meta(channel)
    message = None if row is None else await resources_of(request).db.fetch_one("messages.target", sa.select(
        messages.c.id, messages.c.author_id, messages.c.data, messages.c.deleted_at).where(
        messages.c.channel_id == row.id, messages.c.offset == target))
    if message is None or is_event(message["data"]):
        raise NotFound("No such message in this channel.", code="message_not_found")
    return row, message


@requires()
async def list_reactions(request: Request) -> Response:
    """Who reacted with what, first reaction first."""
    _, message = await _message(request)
    rows = await resources_of(request).db.fetch_all("reactions.who", sa.select(
        reactions.c.emoji, users.c.username, users.c.display_name).select_from(
        reactions.join(users, users.c.id == reactions.c.user_id)).where(
        reactions.c.message_id == message["id"]).order_by(reactions.c.created_at, reactions.c.user_id))
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["emoji"], []).append(
            {"username": row["username"], "display_name": row["display_name"]})
    return JSONResponse({"reactions": [{"emoji": emoji, "count": len(people), "users": people}
                                       for emoji, people in grouped.items()]})


@requires()
async def list_edits(request: Request) -> Response:
    """What the message said before each edit (and before its deletion): moderators only."""
    row, message = await _message(request)
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    if not await hooks.amendments.moderates(conn_user(principal_of(request)), row):
        raise Forbidden("Only moderators see the edit history.", code="not_moderator")
    rows = await resources_of(request).db.fetch_all("messages.edits", sa.select(
        message_edits.c.action, message_edits.c.data, message_edits.c.created_at, users.c.username).select_from(
        message_edits.outerjoin(users, users.c.id == message_edits.c.editor_id)).where(
        message_edits.c.message_id == message["id"]).order_by(message_edits.c.id))
    return JSONResponse({"edits": [{"action": r["action"], "data": r["data"], "by": r["username"],
                                    "at": r["created_at"].isoformat()} for r in rows]})


class Amended(Closed):
    """An edit, delete or reaction is itself published: its own offset in the channel."""

    channel: str
    offset: int
    epoch: str


class Reactor(Closed):
    username: str
    display_name: str | None


class ReactionGroup(Closed):
    emoji: str
    count: int
    users: list[Reactor]


class Reactions(Closed):
    reactions: list[ReactionGroup]


class MessageEdit(Closed):
    """What the message said before an edit or the deletion; `by` null once the editor is gone."""

    action: str
    data: Any
    by: str | None
    at: datetime


class MessageEdits(Closed):
    edits: list[MessageEdit]


PATH = "/api/channels/{channel}/messages/{offset:int}"
routes = [
    api(PATH, edit_message, ["PATCH"], ok={200: Amended}, examples={"edit": {"data": {"text": "fixed typo"}}}),
    api(PATH, delete_message, ["DELETE"], ok={200: Amended}),
    api(PATH + "/reactions", add_reaction, ["POST"], ok={200: Amended}, examples={"thumbs": {"emoji": "👍"}}),
    api(PATH + "/reactions", remove_reaction, ["DELETE"], ok={200: Amended}),
    api(PATH + "/reactions", list_reactions, ["GET"], ok={200: Reactions}),
    api(PATH + "/edits", list_edits, ["GET"], ok={200: MessageEdits}),
]
