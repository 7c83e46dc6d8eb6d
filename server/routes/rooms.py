"""Rooms and direct messages: list, show, create, join, leave, invite, members, topic; open a DM.

A private room the caller is not in answers exactly like an unknown room (404 `room_not_found`),
so its name cannot be probed. Admins see every room, as the realtime layer lets them subscribe.
A group's room follows the group: its members leave it by leaving the group, and only the group's
members are invited into a private group's room (409 `group_room` otherwise).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from realtime.errors import ReplyError
from server.auth import rbac
from server.auth.principal import principal_of, requires
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.errors import BadRequest, Conflict, Forbidden, NotFound
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed
from server.realtime_hooks import DM_REFUSALS, conn_user
from server.resources import resources_of
from server.routes.auth import USERNAME
from server.services.channels import ROOM_NAME, TOPIC_MAX, ChannelMeta, Channels
from server.services.chat_data import control_character
from server.services.groups import Groups


class CreateRoomBody(BaseModel):
    name: str = Field(pattern=ROOM_NAME.pattern)
    private: bool = False
    topic: str | None = Field(default=None, max_length=TOPIC_MAX)


class TopicBody(BaseModel):
    """`PATCH /api/rooms/{name}`: the topic, trimmed; blank or null clears it."""

    topic: str | None = Field(max_length=TOPIC_MAX)

    @field_validator("topic")
    @classmethod
    def _trim(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if control_character(value) is not None:
            raise ValueError("The topic cannot contain control characters.")
        return value.strip() or None


class InviteBody(BaseModel):
    username: str = Field(pattern=USERNAME)


ChannelKind = Literal["room", "private_room", "dm", "thread"]


class Room(Closed):
    """`_room_json`: a room as the list and the detail show it (`unread` counts only for members)."""

    channel: str
    kind: ChannelKind
    title: str | None
    topic: str | None
    member: bool
    role: str | None
    last_offset: int
    unread: int
    slow_mode: int

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "channel": "room:general", "kind": "room", "title": None, "topic": "Say hi", "member": True,
        "role": "member", "last_offset": 1280, "unread": 3, "slow_mode": 0}]})


class Rooms(Closed):
    rooms: list[Room]


class RoomMember(Closed):
    id: int
    username: str
    role: str


class RoomMembers(Closed):
    members: list[RoomMember]


class RoomCreated(Closed):
    channel: str
    kind: ChannelKind


class Joined(Closed):
    channel: str
    joined: Literal[True]


class Invited(Closed):
    channel: str
    invited: str
    already_member: bool


class DmOpened(Closed):
    channel: str


def _channels(request: Request) -> Channels:
    """The app's channel store: cached reads, and writes that invalidate on every replica."""
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    return hooks.channels


def _group_rules(request: Request) -> Groups:
    """A group's room follows the group (server/services/groups.py): leaving it or inviting into
    it is checked there (409 `group_room`)."""
    groups = resources_of(request).groups
    assert groups is not None  # set by Resources.build
    return groups


async def _room(request: Request) -> ChannelMeta:
    name = request.path_params["name"]
    room = await _channels(request).meta(f"room:{name}")
    if room is None or room.kind not in ("room", "private_room"):
        raise NotFound("No such room.", code="room_not_found")
    return room


def _room_json(r: Any, unread: dict[int, int]) -> dict[str, Any]:
    """One room as `GET /api/rooms` lists it and `GET /api/rooms/{name}` shows it."""
    return {"channel": r["name"], "kind": r["kind"], "title": r["title"], "topic": r["topic"],
            "member": r["role"] is not None, "role": r["role"], "last_offset": r["last_offset"],
            "unread": unread.get(r["id"], 0), "slow_mode": r["slow_mode_seconds"]}


async def _unread(request: Request, rows: list[Any]) -> dict[int, int]:
    """Unread messages of the rooms the caller is a member of (non-members have no marker)."""
    return await _channels(request).unread_counts(
        {r["id"]: (r["last_read_offset"], r["last_offset"]) for r in rows if r["role"] is not None})


async def _visible_room(request: Request) -> Any:
    """The room row for the caller; unknown and private-and-not-a-member are the same 404."""
    principal = principal_of(request)
    row = await _channels(request).room_view(f"room:{request.path_params['name']}", principal.user_id)
    if row is None or (row["kind"] == "private_room" and row["role"] is None and principal.role != "admin"):
        raise NotFound("No such room.", code="room_not_found")
    return row


@requires()
async def list_rooms(request: Request) -> Response:
    principal = principal_of(request)
    rows = await _channels(request).visible_rooms(principal.user_id)
    unread = await _unread(request, rows)
    return JSONResponse({"rooms": [_room_json(r, unread) for r in rows]})


@requires()
async def show_room(request: Request) -> Response:
    row = await _visible_room(request)
    return JSONResponse(_room_json(row, await _unread(request, [row])))


@requires()
async def room_members(request: Request) -> Response:
    row = await _visible_room(request)
    return JSONResponse({"members": await _channels(request).members(row["id"])})


@requires()
async def update_room(request: Request) -> Response:
    """Edit the topic: the room's owner or moderators (or a site admin)."""
    body = await read_json(request, TopicBody)
    row = await _visible_room(request)
    principal = principal_of(request)
    if not rbac.channel_allowed(row["role"], "channel.moderate") and principal.role != "admin":
        raise Forbidden("Only the room's owner or moderators change the topic.", code="not_room_moderator")
    channels = _channels(request)
    await channels.set_topic(ChannelMeta(row["id"], row["name"], row["kind"], row["title"], row["topic"]),
                             body.topic)
    updated = await channels.room_view(row["name"], principal.user_id)
    return JSONResponse(_room_json(updated, await _unread(request, [updated])))


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
    sanctions = resources_of(request).sanctions
    if sanctions is not None:
        try:
            await sanctions.check(conn_user(principal), room.id, "subscribe")
        except ReplyError as exc:
            raise Forbidden(exc.message.capitalize() + ".", code="banned") from None
    await channels.add_member(room.id, principal.user_id)
    return JSONResponse({"channel": room.name, "joined": True})


@requires()
async def leave_room(request: Request) -> Response:
    room = await _room(request)
    user_id = principal_of(request).user_id
    await _group_rules(request).check_room_leave(room.id, user_id)
    await _channels(request).remove_member(room.id, user_id)
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
    await _group_rules(request).check_room_invite(room.id, invitee["id"])
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
    relations = resources_of(request).relations
    refusal = await relations.dm_refusal(principal.user_id, other["id"]) if relations is not None else None
    if refusal is not None:
        raise Forbidden(DM_REFUSALS[refusal].capitalize() + ".", code=refusal)
    row = await _channels(request).ensure_dm(principal.user_id, other["id"])
    return JSONResponse({"channel": row.name})


routes = [
    api("/api/rooms", list_rooms, ["GET"], ok={200: Rooms}),
    api("/api/rooms", create_room, ["POST"], ok={201: RoomCreated},
        examples={"public": {"name": "general", "topic": "Say hi"}, "private": {"name": "staff", "private": True}}),
    api("/api/rooms/{name}", show_room, ["GET"], ok={200: Room}),
    api("/api/rooms/{name}", update_room, ["PATCH"], ok={200: Room}, examples={"topic": {"topic": "Release day"}}),
    api("/api/rooms/{name}/members", room_members, ["GET"], ok={200: RoomMembers}),
    api("/api/rooms/{name}/join", join_room, ["POST"], ok={200: Joined}),
    api("/api/rooms/{name}/leave", leave_room, ["POST"]),
    api("/api/rooms/{name}/invite", invite, ["POST"], ok={200: Invited}, examples={"invite": {"username": "alex"}}),
    api("/api/dms", open_dm, ["POST"], ok={200: DmOpened}, examples={"dm": {"username": "alex"}}),
]
