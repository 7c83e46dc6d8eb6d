"""HTTP routes of the community's groups and events (docs/community.md, "Groups" and "Events").

Handlers validate (pydantic, unknown fields refused) and hand over to server/services/groups.py,
which decides who sees what (404 for a private group or its events to non-members), keeps the
counters and publishes on the `live:` streams.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import principal_of, requires
from server.errors import ValidationFailed
from server.jsonio import JSONResponse, query_int, read_json
from server.openapi import api
from server.openapi.responses import Author, Closed
from server.ratelimit import limit_action
from server.resources import resources_of
from server.services.chat_data import control_character
from server.services.cursors import MAX_ID, decode_id
from server.services.groups import Events, Groups, check_times, decode_event_cursor
from server.services.viewer import Viewer

GROUP_NAME_MIN, GROUP_NAME_MAX, GROUP_DESCRIPTION_MAX = 3, 64, 2000
EVENT_TITLE_MAX, EVENT_DESCRIPTION_MAX, PLACE_TEXT_MAX = 200, 5000, 200
CAPACITY_MAX = 100_000
SERVER_NAME = re.compile(r"[A-Za-z0-9 ._-]{1,64}")
_ZONES = frozenset(available_timezones())


# --- field types -----------------------------------------------------------------------------------

def _line(value: str) -> str:
    """One line: trimmed, inner runs of spaces collapsed, no control characters."""
    if control_character(value) is not None or "\n" in value or "\t" in value:
        raise ValueError("The text cannot contain control characters or line breaks.")
    return " ".join(value.split())


def _text(value: str | None) -> str | None:
    """Trimmed, line breaks normalised, other control characters refused; blank is none."""
    if value is None:
        return None
    value = value.replace("\r\n", "\n").strip()
    if control_character(value) is not None:
        raise ValueError("The text cannot contain control characters other than line breaks and tabs.")
    return value or None


def _group_name(value: str) -> str:
    value = _line(value)
    if len(value) < GROUP_NAME_MIN:
        raise ValueError(f"A group's name has {GROUP_NAME_MIN} to {GROUP_NAME_MAX} characters.")
    return value


def _title(value: str) -> str:
    value = _line(value)
    if not value:
        raise ValueError("Give the event a title.")
    return value


def _iso_string(value: Any) -> Any:
    """Times are ISO 8601 strings (a bare number is not a time here). Parsed here because bodies
    are validated strictly: after a before-validator pydantic no longer turns JSON text into a
    datetime itself."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("Give the time as ISO 8601 text with an offset, e.g. 2026-12-31T20:00:00+01:00.")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("Give the time as ISO 8601 text with an offset, e.g. 2026-12-31T20:00:00+01:00.") from None


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("The time is out of range.") from None


def _zone(value: str) -> str:
    if value not in _ZONES:
        raise ValueError("Not an IANA time zone name (e.g. Europe/Paris).")
    return value


GroupName = Annotated[str, Field(max_length=GROUP_NAME_MAX), AfterValidator(_group_name)]
GroupDescription = Annotated[str | None, Field(max_length=GROUP_DESCRIPTION_MAX), AfterValidator(_text)]
Time = Annotated[AwareDatetime, BeforeValidator(_iso_string), AfterValidator(_utc)]
Title = Annotated[str, Field(min_length=1, max_length=EVENT_TITLE_MAX), AfterValidator(_title)]
Description = Annotated[str | None, Field(max_length=EVENT_DESCRIPTION_MAX), AfterValidator(_text)]
Zone = Annotated[str, Field(max_length=64), AfterValidator(_zone)]
Capacity = Annotated[int, Field(ge=1, le=CAPACITY_MAX, strict=True)]


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: GroupName
    description: GroupDescription = None
    visibility: Literal["public", "private"] = "public"


class GroupPatch(BaseModel):
    """Only the fields sent change; the visibility is fixed (the room and the events follow it)."""

    model_config = ConfigDict(extra="forbid")

    name: GroupName | None = None
    description: GroupDescription = None


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["moderator", "member"]


class ServerPlace(BaseModel):
    """A Minecraft server of the server list, by name (the list itself comes with issue 18)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["server"]
    server: str = Field(max_length=64)

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        value = value.strip()
        if not SERVER_NAME.fullmatch(value):
            raise ValueError("A server name has 1 to 64 letters, digits, spaces, dots, dashes or underscores.")
        return value


class TextPlace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["text"]
    text: Annotated[str, Field(max_length=PLACE_TEXT_MAX), AfterValidator(_title)]


Place = Annotated[ServerPlace | TextPlace, Field(discriminator="kind")]


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    starts_at: Time
    ends_at: Time
    description: Description = None
    timezone: Zone = "UTC"
    place: Place | None = None
    capacity: Capacity | None = None
    group_id: int | None = Field(default=None, ge=1, lt=MAX_ID, strict=True)

    @field_validator("ends_at")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        starts = info.data.get("starts_at")
        if starts is not None and value <= starts:
            raise ValueError("The event must end after it starts.")
        return value


class EventPatch(BaseModel):
    """Only the fields sent change; `null` clears description, place and capacity."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    starts_at: Time | None = None
    ends_at: Time | None = None
    description: Description = None
    timezone: Zone | None = None
    place: Place | None = None
    capacity: Capacity | None = None


class RsvpBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["going", "interested", "not_going"]


REQUIRED_WHEN_SENT = ("title", "starts_at", "ends_at", "timezone")  # PATCH: these cannot be null


# --- responses (the dicts server/services/groups.py builds) -----------------------------------------
MemberRole = Literal["owner", "moderator", "member", "pending"]  # group_members.role


class Group(Closed):
    """`Groups.shape`: `room` is the group's chat room; `my_role` null when not a member."""

    id: int
    name: str
    slug: str
    description: str | None
    visibility: Literal["public", "private"]
    members: int
    my_role: MemberRole | None
    room: str | None
    created_at: datetime

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": 3, "name": "Builders", "slug": "builders", "description": "We build things", "visibility": "public",
        "members": 12, "my_role": "member", "room": "room:group-3", "created_at": "2026-01-02T15:04:05.123456+00:00"}]})


class JoinRequested(Closed):
    """Joining a private group: a pending request (what the group holds stays hidden until approved)."""

    id: int
    my_role: MemberRole | None


class Joined(RootModel[Group | JoinRequested]):
    """The group (a public one, or a private one you were already in), or your pending request."""


class GroupPage(Closed):
    items: list[Group]
    next: str | None


class GroupMember(Closed):
    user: Author | None
    role: MemberRole
    joined_at: datetime


class GroupMemberPage(Closed):
    items: list[GroupMember]
    next: str | None


class JoinRequest(Closed):
    user: Author | None
    requested_at: datetime


class JoinRequestPage(Closed):
    items: list[JoinRequest]
    next: str | None


class MemberRoleSet(Closed):
    user: Author | None
    role: MemberRole


RsvpStatus = Literal["going", "interested", "not_going"]


class RsvpCounts(Closed):
    going: int
    interested: int
    not_going: int


class EventPlace(Closed):
    """`{"kind": "server", "server": ...}` or `{"kind": "text", "text": ...}`."""

    kind: Literal["server", "text"]
    server: str | None = None
    text: str | None = None


class Event(Closed):
    """`Events.shape`."""

    id: int
    title: str
    description: str | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    place: EventPlace | None
    capacity: int | None
    group_id: int | None
    author: Author | None
    counts: RsvpCounts
    my_status: RsvpStatus | None
    full: bool
    created_at: datetime


class EventPage(Closed):
    items: list[Event]
    next: str | None


class Rsvp(Closed):
    counts: RsvpCounts
    my_status: RsvpStatus


def _event_columns(body: EventBody | EventPatch, sent: set[str]) -> dict[str, Any]:
    """The body's fields as the `events` row's columns (only those sent)."""
    for name in REQUIRED_WHEN_SENT:
        if name in sent and getattr(body, name) is None:
            raise ValidationFailed(details=[{"field": name, "code": "missing", "message": "cannot be null"}])
    columns = {name: getattr(body, name) for name in sent if name != "place"}
    if "place" in sent:
        place = body.place
        columns.update(place_kind=place.kind if place else None,
                       place_server=place.server if isinstance(place, ServerPlace) else None,
                       place_text=place.text if isinstance(place, TextPlace) else None)
    return columns


# --- helpers ---------------------------------------------------------------------------------------

def _groups(request: Request) -> Groups:
    groups = resources_of(request).groups
    assert groups is not None  # set by Resources.build
    return groups  # type: ignore[no-any-return]


def _events(request: Request) -> Events:
    return _groups(request).events


def _viewer(request: Request) -> Viewer:
    principal = principal_of(request)
    return Viewer.of(principal)


async def _writer(request: Request) -> Viewer:
    """The caller of a write, counted against the `write` rate limit."""
    await limit_action(request, principal_of(request), "write")
    return _viewer(request)


def _id(request: Request) -> int:
    return int(request.path_params["id"])


def _limit(request: Request) -> int:
    return query_int(request, "limit", 1, 50, 20)


# --- groups ----------------------------------------------------------------------------------------

@requires()
async def list_groups(request: Request) -> Response:
    cursor = decode_id(request.query_params.get("cursor"))
    page = await _groups(request).list(_viewer(request), cursor, _limit(request))
    return JSONResponse(page.body())


@requires()
async def create_group(request: Request) -> Response:
    body = await read_json(request, GroupBody)
    viewer = await _writer(request)
    group = await _groups(request).create(viewer, body.name, body.description, body.visibility)
    return JSONResponse(group, status_code=201)


@requires()
async def show_group(request: Request) -> Response:
    return JSONResponse(await _groups(request).show(_id(request), _viewer(request)))


@requires()
async def edit_group(request: Request) -> Response:
    body = await read_json(request, GroupPatch)
    if "name" in body.model_fields_set and body.name is None:
        raise ValidationFailed(details=[{"field": "name", "code": "missing", "message": "cannot be null"}])
    viewer = await _writer(request)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    return JSONResponse(await _groups(request).update(_id(request), viewer, changes))


@requires()
async def join_group(request: Request) -> Response:
    viewer = await _writer(request)
    return JSONResponse(await _groups(request).join(_id(request), viewer))


@requires()
async def leave_group(request: Request) -> Response:
    viewer = await _writer(request)
    await _groups(request).leave(_id(request), viewer)
    return Response(status_code=204)


@requires()
async def group_members(request: Request) -> Response:
    cursor = decode_id(request.query_params.get("cursor"))
    page = await _groups(request).members(_id(request), _viewer(request), cursor, _limit(request))
    return JSONResponse(page.body())


@requires()
async def group_requests(request: Request) -> Response:
    cursor = decode_id(request.query_params.get("cursor"))
    page = await _groups(request).requests(_id(request), _viewer(request), cursor, _limit(request))
    return JSONResponse(page.body())


@requires()
async def approve_request(request: Request) -> Response:
    viewer = await _writer(request)
    groups = _groups(request)
    group_id = _id(request)
    await groups.staff(group_id, viewer)  # 404 / 403 before the name is looked up
    user_id = await groups.user_id_of(request.path_params["username"])
    return JSONResponse(await groups.approve(group_id, viewer, user_id))


@requires()
async def decline_request(request: Request) -> Response:
    viewer = await _writer(request)
    groups = _groups(request)
    group_id = _id(request)
    await groups.staff(group_id, viewer)
    await groups.decline(group_id, viewer, await groups.user_id_of(request.path_params["username"]))
    return Response(status_code=204)


@requires()
async def set_member_role(request: Request) -> Response:
    body = await read_json(request, RoleBody)
    viewer = await _writer(request)
    groups = _groups(request)
    group_id = _id(request)
    await groups.readable(group_id, viewer)  # 404 first: a member's name says nothing about a hidden group
    user_id = await groups.user_id_of(request.path_params["username"])
    return JSONResponse(await groups.set_role(group_id, viewer, user_id, body.role))


# --- events ----------------------------------------------------------------------------------------

@requires()
async def list_events(request: Request) -> Response:
    when = request.query_params.get("when") or "upcoming"
    if when not in ("upcoming", "past"):
        raise ValidationFailed(details=[{"field": "when", "code": "literal_error",
                                         "message": "must be upcoming or past"}])
    group_id = query_int(request, "group", 1, MAX_ID - 1)
    cursor = decode_event_cursor(request.query_params.get("cursor"))
    page = await _events(request).list(_viewer(request), when, group_id, cursor, _limit(request))
    return JSONResponse(page.body())


@requires()
async def create_event(request: Request) -> Response:
    body = await read_json(request, EventBody)
    check_times(body.starts_at, body.ends_at)
    viewer = await _writer(request)
    columns = _event_columns(body, set(EventBody.model_fields))
    return JSONResponse(await _events(request).create(viewer, columns), status_code=201)


@requires()
async def show_event(request: Request) -> Response:
    events = _events(request)
    viewer = _viewer(request)
    return JSONResponse(await events.one(await events.visible(_id(request), viewer), viewer.user_id))


@requires()
async def edit_event(request: Request) -> Response:
    body = await read_json(request, EventPatch)
    viewer = await _writer(request)
    columns = _event_columns(body, set(body.model_fields_set))
    return JSONResponse(await _events(request).update(_id(request), viewer, columns))


@requires()
async def delete_event(request: Request) -> Response:
    viewer = await _writer(request)
    await _events(request).delete(_id(request), viewer)
    return Response(status_code=204)


@requires()
async def rsvp(request: Request) -> Response:
    body = await read_json(request, RsvpBody)
    viewer = await _writer(request)
    return JSONResponse(await _events(request).rsvp(_id(request), viewer, body.status))


routes: list[BaseRoute] = [
    api("/api/groups", list_groups, ["GET"], ok={200: GroupPage}),
    api("/api/groups", create_group, ["POST"], ok={201: Group},
        examples={"group": {"name": "Builders", "description": "We build things", "visibility": "public"}}),
    api("/api/groups/{id:int}", show_group, ["GET"], ok={200: Group}),
    api("/api/groups/{id:int}", edit_group, ["PATCH"], ok={200: Group}),
    api("/api/groups/{id:int}/join", join_group, ["POST"], ok={200: Joined}),
    api("/api/groups/{id:int}/leave", leave_group, ["POST"]),
    api("/api/groups/{id:int}/members", group_members, ["GET"], ok={200: GroupMemberPage}),
    api("/api/groups/{id:int}/requests", group_requests, ["GET"], ok={200: JoinRequestPage}),
    api("/api/groups/{id:int}/requests/{username}/approve", approve_request, ["POST"], ok={200: MemberRoleSet}),
    api("/api/groups/{id:int}/requests/{username}/decline", decline_request, ["POST"]),
    api("/api/groups/{id:int}/members/{username}/role", set_member_role, ["PUT"], ok={200: MemberRoleSet}),
    api("/api/events", list_events, ["GET"], ok={200: EventPage}),
    api("/api/events", create_event, ["POST"], ok={201: Event}),
    api("/api/events/{id:int}", show_event, ["GET"], ok={200: Event}),
    api("/api/events/{id:int}", edit_event, ["PATCH"], ok={200: Event}),
    api("/api/events/{id:int}", delete_event, ["DELETE"]),
    api("/api/events/{id:int}/rsvp", rsvp, ["POST"], ok={200: Rsvp}, examples={"going": {"status": "going"}}),
]
