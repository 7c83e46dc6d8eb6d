"""Rooms and direct messages: list, create, join, leave, invite; open a DM."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import rbac
from server.auth.principal import principal_of, requires
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.errors import BadRequest, Conflict, Forbidden, NotFound
from server.jsonio import JSONResponse, read_json
from server.resources import resources_of
from server.routes.auth import USERNAME
from server.services.channels import ROOM_NAME, ChannelMeta, Channels


class CreateRoomBody(BaseModel):
    name: str = Field(pattern=ROOM_NAME.pattern)
    private: bool = False
    topic: str | None = Field(default=None, max_length=500)


class InviteBody(BaseModel):
    username: str = Field(pattern=USERNAME)


def _channels(request: Request) -> Channels:
    """The app's channel store: cached reads, and writes that invalidate on every replica."""
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    return hooks.channels


async def _room(request: Request) -> ChannelMeta:
    name = request.path_params["name"]
    room = await _channels(request).meta(f"room:{name}")
    if room is None or room.kind not in ("room", "private_room"):
        raise NotFound("No such room.", code="room_not_found")
    return room


@requires()
async def list_rooms(request: Request) -> Response:
    principal = principal_of(request)
    rows = await _channels(request).visible_rooms(principal.user_id)
    return JSONResponse({"rooms": [
        {"channel": r["name"], "kind": r["kind"], "title": r["title"], "topic": r["topic"],
         "member": r["role"] is not None, "role": r["role"], "last_offset": r["last_offset"],
         "unread": max(0, r["last_offset"] - r["last_read_offset"]) if r["role"] is not None else 0}
        for r in rows]})


@requires("rooms.create")
async def create_room(request: Request) -> Response:
    body = await read_json(request, CreateRoomBody)
    principal = principal_of(request)
    try:
        room = await _channels(request).create_room(body.name, owner_id=principal.user_id, private=body.private,
                                                   topic=body.topic)
    except UniqueViolation:
        raise Conflict("A room with that name exists.", code="room_exists") from None
    return JSONResponse({"channel": room.name, "kind": room.kind}, status_code=201)


@requires()
async def join_room(request: Request) -> Response:
    room = await _room(request)
    principal = principal_of(request)
    channels = _channels(request)
    if room.private and await channels.member_role(room.id, principal.user_id) is None:
        raise Forbidden("This room is private; ask for an invitation.", code="room_private")
    await channels.add_member(room.id, principal.user_id)
    return JSONResponse({"channel": room.name, "joined": True})


@requires()
async def leave_room(request: Request) -> Response:
    room = await _room(request)
    await _channels(request).remove_member(room.id, principal_of(request).user_id)
    return Response(status_code=204)


@requires()
async def invite(request: Request) -> Response:
    body = await read_json(request, InviteBody)
    room = await _room(request)
    principal = principal_of(request)
    channels = _channels(request)
    membership = await channels.member_role(room.id, principal.user_id)
    if not rbac.channel_allowed(membership[0] if membership else None, "channel.invite") and principal.role != "admin":
        raise Forbidden("Only the room's owner or moderators invite.", code="not_room_moderator")
    invitee = await user_queries.by_username(resources_of(request).db, body.username)
    if invitee is None:
        raise NotFound("No such user.", code="user_not_found")
    added = await channels.add_member(room.id, invitee["id"])
    return JSONResponse({"channel": room.name, "invited": invitee["username"], "already_member": not added})


class DmBody(BaseModel):
    username: str = Field(pattern=USERNAME)


@requires()
async def open_dm(request: Request) -> Response:
    body = await read_json(request, DmBody)
    principal = principal_of(request)
    other = await user_queries.by_username(resources_of(request).db, body.username)
    if other is None:
        raise NotFound("No such user.", code="user_not_found")
    if other["id"] == principal.user_id:
        raise BadRequest("You cannot message yourself.", code="dm_self")
    row = await _channels(request).ensure_dm(principal.user_id, other["id"])
    return JSONResponse({"channel": row.name})


routes = [
    Route("/api/rooms", list_rooms, methods=["GET"]),
    Route("/api/rooms", create_room, methods=["POST"]),
    Route("/api/rooms/{name}/join", join_room, methods=["POST"]),
    Route("/api/rooms/{name}/leave", leave_room, methods=["POST"]),
    Route("/api/rooms/{name}/invite", invite, methods=["POST"]),
    Route("/api/dms", open_dm, methods=["POST"]),
]
