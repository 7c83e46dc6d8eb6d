"""The PWA's inbox helpers: the direct-message list and read markers for rooms and DMs.

`GET /api/dms` lists the caller's DM channels with the other member and unread counts (the room
list, `GET /api/rooms`, carries the same counts for rooms). `POST /api/channels/{channel}/read`
moves the caller's read marker forward (never back), which is what the unread counts subtract; the
PWA sends the websocket `read` op instead (server/services/read_markers.py does both).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from realtime import errors
from realtime.errors import ReplyError
from server.auth.principal import principal_of, requires
from server.db.tables import channel_members, channels, users
from server.errors import NotFound
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed
from server.realtime_hooks import conn_user
from server.resources import resources_of
from server.services.channels import dm_members


class ReadBody(BaseModel):
    offset: int = Field(ge=0, le=2**62)


class DmUser(Closed):
    id: int
    username: str


class LastMessage(Closed):
    """The conversation's last message: empty `text` once deleted; `from` null for a system message."""

    text: str
    from_: DmUser | None = Field(alias="from")
    ts: datetime


class Dm(Closed):
    channel: str
    user: DmUser
    last_offset: int
    unread: int
    last_message: LastMessage | None


class Dms(Closed):
    dms: list[Dm]


class ChannelRead(Closed):
    """`ReadState.fields` and the channel: the marker now stored (never moved back) and what is unread."""

    channel: str
    offset: int
    channel_unread: int  # messages after the marker in this channel
    unread: int  # the member's unread notifications, all channels


@requires()
async def list_dms(request: Request) -> Response:
    """The caller's DMs, most recent conversation first, each with its last message (or null)."""
    user_id = principal_of(request).user_id
    mine = channel_members.alias("mine")
    query = (
        sa.select(channels.c.id, channels.c.name, channels.c.last_offset, mine.c.last_read_offset)
        .select_from(channels.join(mine, mine.c.channel_id == channels.c.id))
        .where(mine.c.user_id == user_id, channels.c.kind == "dm")
        .order_by(channels.c.last_offset.desc(), channels.c.id.desc())
        .limit(200)
    )
    db = resources_of(request).db
    rows = await db.fetch_all("inbox.dms", query)
    others = {}
    for row in rows:
        members = dm_members(row["name"])
        if members is not None:
            others[row["name"]] = members[0] if members[1] == user_id else members[1]
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    last = await hooks.channels.last_messages({r["id"]: r["last_offset"] for r in rows if r["name"] in others})
    people = set(others.values()) | {m["author_id"] for m in last.values() if m["author_id"] is not None}
    names = {}
    if people:
        found = await db.fetch_all("users.names", sa.select(users.c.id, users.c.username).where(
            users.c.id.in_(people)))
        names = {r["id"]: r["username"] for r in found}

    def last_message(channel_id: int) -> dict[str, object] | None:
        message = last.get(channel_id)
        if message is None:
            return None
        data = message["data"]
        text = message["body"] if message["body"] is not None else (
            data.get("text") if isinstance(data, dict) and isinstance(data.get("text"), str) else "")
        author = message["author_id"]
        return {"text": "" if message["deleted_at"] is not None else text,
                "from": {"id": author, "username": names.get(author, "deleted")} if author is not None else None,
                "ts": message["created_at"]}

    unread = await hooks.channels.unread_counts(
        {r["id"]: (r["last_read_offset"], r["last_offset"]) for r in rows if r["name"] in others})
    listed = sorted((r for r in rows if r["name"] in others), reverse=True, key=lambda r: (
        last[r["id"]]["created_at"].timestamp() if r["id"] in last else 0.0, r["id"]))
    return JSONResponse({"dms": [
        {"channel": r["name"], "user": {"id": others[r["name"]], "username": names.get(others[r["name"]], "deleted")},
         "last_offset": r["last_offset"], "unread": unread.get(r["id"], 0),
         "last_message": last_message(r["id"])}
        for r in listed]})


@requires()
async def mark_channel_read(request: Request) -> Response:
    """The REST twin of the websocket `read` op (for the offline outbox and other clients)."""
    body = await read_json(request, ReadBody)
    channel = request.path_params["channel"]
    principal = principal_of(request)
    resources = resources_of(request)
    hooks = resources.hooks
    assert hooks is not None and hooks.read_markers is not None  # set by Resources.build
    user = conn_user(principal)
    try:
        if not hooks.persisted(channel):
            raise ReplyError(errors.FORBIDDEN, "read markers are kept for rooms and direct messages")
        await hooks.authorize(user, channel, "history")
        state = await hooks.mark_read(user, channel, body.offset)
    except ReplyError:
        raise NotFound("You cannot read that channel.", code="not_a_member") from None
    return JSONResponse({"channel": channel, **state})

routes = [
    api("/api/dms", list_dms, ["GET"], ok={200: Dms}),
    api("/api/channels/{channel}/read", mark_channel_read, ["POST"], ok={200: ChannelRead}),
]
