"""Profiles, friends and blocks: `/api/users/...`, `/api/friends...`, `/api/blocks/...`.

An unknown, deleted or suspended member answers 404 `user_not_found` everywhere, so names cannot
be probed beyond what the member list already shows. Live copies of every change arrive on the
personal channel `user:<id>` (docs/protocol.md: `relationship`, `friend_presence`, `profile`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.auth.principal import principal_of, requires
from server.db.queries import users as user_queries
from server.errors import AppError, NotFound
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Avatar, Closed, Person, Rank, Role
from server.ratelimit import limit_action
from server.resources import resources_of
from server.routes.auth import USERNAME
from server.services.chat_data import control_character
from server.services.people import People
from server.services.relations import RelationError, Relations

BIO_MAX = 500
DISPLAY_NAME_MAX = 64


class ProfileBody(BaseModel):
    """`PATCH /api/users/me`: only the fields sent change; blank or null clears a text field."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX)
    bio: str | None = Field(default=None, max_length=BIO_MAX)
    dm_policy: Literal["everyone", "friends"] | None = None

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if control_character(value) is not None:
            raise ValueError("The display name cannot contain control characters.")
        return " ".join(value.split()) or None

    @field_validator("bio")
    @classmethod
    def _bio(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if control_character(value) is not None:
            raise ValueError("The bio cannot contain control characters other than line breaks and tabs.")
        return value.replace("\r\n", "\n").strip() or None


class UsernameBody(BaseModel):
    username: str = Field(pattern=USERNAME)


def _people(request: Request) -> People:
    people = resources_of(request).people
    assert people is not None  # set by Resources.build
    return people


def _relations(request: Request) -> Relations:
    relations = resources_of(request).relations
    assert relations is not None  # set by Resources.build
    return relations


async def _member(request: Request, username: str) -> Any:
    row = await user_queries.by_username(resources_of(request).db, username)
    if row is None or row["status"] != "active":
        raise NotFound("No such member.", code="user_not_found")
    return row


async def _me(request: Request) -> Any:
    row = await user_queries.by_id(resources_of(request).db, principal_of(request).user_id)
    if row is None:
        raise NotFound("No such member.", code="user_not_found")
    return row


def _refused(exc: RelationError) -> AppError:
    return AppError(exc.message, code=exc.code, status=exc.status)


@requires()
async def show_profile(request: Request) -> Response:
    username = request.path_params["username"]
    row = await _me(request) if username == "me" else await _member(request, username)
    return JSONResponse(await _people(request).profile(principal_of(request).user_id, row))


@requires()
async def edit_profile(request: Request) -> Response:
    body = await read_json(request, ProfileBody)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if "dm_policy" in changes and changes["dm_policy"] is None:
        del changes["dm_policy"]  # null: leave the setting as it is (it has no "unset")
    user_id = principal_of(request).user_id
    people = _people(request)
    if changes:
        await user_queries.update(resources_of(request).db, user_id, **changes)
        if "dm_policy" in changes:
            await _relations(request).dm_policy_changed(user_id)
        await people.publish(user_id, {"type": "profile", **changes})
        await people.check_profile_complete(user_id)
    return JSONResponse(await people.profile(user_id, await _me(request)))


@requires()
async def list_friends(request: Request) -> Response:
    people = _people(request)
    lists = await _relations(request).lists(principal_of(request).user_id)
    return JSONResponse({
        "friends": await people.friends_with_presence(lists["friends"]),
        "incoming": [people.person(row) for row in lists["incoming"]],
        "outgoing": [people.person(row) for row in lists["outgoing"]],
        "blocked": [people.person(row) for row in lists["blocked"]],
    })


@requires()
async def request_friend(request: Request) -> Response:
    body = await read_json(request, UsernameBody)
    other = await _member(request, body.username)
    principal = principal_of(request)
    me = await _me(request)
    relations = _relations(request)
    if other["id"] != me["id"] and await relations.state(me["id"], other["id"]) == "none":
        await limit_action(request, principal, "friend_request")  # only a new request counts
    try:
        state = await relations.request(me, other)
    except RelationError as exc:
        raise _refused(exc) from None
    return JSONResponse({"username": other["username"], "relationship": state})


async def _act(request: Request, action: str) -> Any:
    other = await _member(request, request.path_params["username"])
    me = await _me(request)
    try:
        return other, await getattr(_relations(request), action)(me, other)
    except RelationError as exc:
        raise _refused(exc) from None


@requires()
async def accept_friend(request: Request) -> Response:
    other, state = await _act(request, "accept")
    return JSONResponse({"username": other["username"], "relationship": state})


@requires()
async def decline_friend(request: Request) -> Response:
    await _act(request, "decline")
    return Response(status_code=204)


@requires()
async def remove_friend(request: Request) -> Response:
    await _act(request, "remove")
    return Response(status_code=204)


@requires()
async def block(request: Request) -> Response:
    other, state = await _act(request, "block")
    return JSONResponse({"username": other["username"], "relationship": state})


@requires()
async def unblock(request: Request) -> Response:
    await _act(request, "unblock")
    return Response(status_code=204)

class Progress(Closed):
    """`xp.progress`: the level band and how far to the next level."""

    level: int
    title: str
    colour: str
    xp: int
    level_xp: int
    next_level_xp: int


class MinecraftAccount(Closed):
    name: str | None
    uuid: str


class Profile(Closed):
    """`People.profile`: presence (`online`, `last_seen_at`) only for friends, room mates and oneself
    (else null); `dm_policy` only on one's own profile."""

    username: str
    display_name: str | None
    avatar: Avatar
    role: Role
    bio: str | None
    badges: list[str]
    level: int
    xp: int
    progress: Progress
    rank: Rank | None
    joined_at: datetime
    online: bool | None
    last_seen_at: datetime | None
    minecraft: MinecraftAccount | None
    relationship: str
    can_dm: bool
    dm_policy: str | None = None


class Friend(Closed):
    username: str
    display_name: str | None
    avatar: Avatar
    role: Role
    online: bool
    last_seen_at: datetime | None


class Friends(Closed):
    friends: list[Friend]
    incoming: list[Person]
    outgoing: list[Person]
    blocked: list[Person]


class Relationship(Closed):
    username: str
    relationship: str

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"username": "alex", "relationship": "outgoing"}]})


# The RelationError codes (server/services/relations.py) each action may answer, read by `_act`'s getattr.
FRIEND_REQUEST_ERRORS = [(400, "friend_self"), (409, "user_blocked"), (403, "friend_request_refused"),
                         (409, "already_friends")]


routes = [
    api("/api/users/me", edit_profile, ["PATCH"], ok={200: Profile}),
    api("/api/users/{username}", show_profile, ["GET"], ok={200: Profile}),
    api("/api/friends", list_friends, ["GET"], ok={200: Friends}),
    api("/api/friends", request_friend, ["POST"], errors=FRIEND_REQUEST_ERRORS, ok={200: Relationship},
        examples={"request": {"username": "alex"}}),
    api("/api/friends/{username}/accept", accept_friend, ["POST"], errors=[(404, "request_not_found")],
        ok={200: Relationship}),
    api("/api/friends/{username}/decline", decline_friend, ["POST"], errors=[(404, "request_not_found")]),
    api("/api/friends/{username}", remove_friend, ["DELETE"], errors=[(404, "friend_not_found")]),
    api("/api/blocks/{username}", block, ["PUT"], errors=[(400, "block_self")], ok={200: Relationship}),
    api("/api/blocks/{username}", unblock, ["DELETE"], errors=[(404, "block_not_found")]),
]
