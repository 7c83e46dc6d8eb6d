"""Moderation: mutes and bans, kicks, slow mode and room roles; reports and the moderators' queue.

Who may act: site moderators and admins anywhere, a room's owner and moderators in their room, and
only on members below them (`services/sanctions.py`). A room nobody may see answers 404 like an
unknown one; visible but not yours to moderate answers 403 `not_moderator`. Every action lands in
the audit log with who, what and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response

from realtime.errors import ReplyError
from server.auth import audit
from server.auth.principal import principal_of, requires
from server.db.queries import users as user_queries
from server.db.tables import channels, messages, reports, users
from server.db.tables import sanctions as sanctions_table
from server.db.tables_feed import feed_report_targets, post_comments, posts
from server.db.types import utcnow
from server.errors import BadRequest, Forbidden, NotFound
from server.jsonio import JSONResponse, query_int, read_json
from server.openapi import api
from server.openapi.responses import Closed, When
from server.ratelimit import limit_action
from server.realtime_hooks import conn_user
from server.resources import resources_of
from server.routes.auth import USERNAME
from server.services.amendments import is_event
from server.services.channels import ChannelMeta
from server.services.chat_data import control_character
from server.services.sanctions import Sanctions
from server.services.viewer import Viewer

MAX_MINUTES = 366 * 24 * 60
SLOW_MODE_MAX = 6 * 60 * 60


def _reason(value: str) -> str:
    if control_character(value) is not None:
        raise ValueError("The reason cannot contain control characters.")
    value = value.strip()
    if not value:
        raise ValueError("Give a reason.")
    return value


# Why a moderator acted or a member reports: kept in the audit log and shown to the member.
Reason = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_reason)]


class SanctionBody(BaseModel):
    kind: Literal["mute", "ban"]
    username: str = Field(pattern=USERNAME)
    channel: str | None = Field(default=None, pattern=r"^room:[a-z0-9][a-z0-9_\-]{0,63}$")  # None: site-wide
    minutes: int | None = Field(default=None, ge=1, le=MAX_MINUTES)  # None: permanent (bans only)
    reason: Reason

    @model_validator(mode="after")
    def _timed_mutes(self) -> SanctionBody:
        if self.kind == "mute" and self.minutes is None:
            raise ValueError("a mute is timed: give minutes")
        return self


class KickBody(BaseModel):
    username: str = Field(pattern=USERNAME)
    reason: Reason


class SlowModeBody(BaseModel):
    seconds: int = Field(ge=0, le=SLOW_MODE_MAX)


class RoleBody(BaseModel):
    role: Literal["moderator", "member"]


class ReportBody(BaseModel):
    """One target: a chat message (`channel` + `offset`), a member (`username`), or a feed post or
    comment (`target` + `id`)."""

    channel: str | None = Field(default=None, pattern=r"^(room|dm):[A-Za-z0-9_\-:.]{1,150}$")
    offset: int | None = Field(default=None, ge=1, le=2**62)
    username: str | None = Field(default=None, pattern=USERNAME)
    target: Literal["post", "comment"] | None = None
    id: int | None = Field(default=None, ge=1, lt=2**62)
    reason: Reason

    @model_validator(mode="after")
    def _one_target(self) -> ReportBody:
        message = self.channel is not None and self.offset is not None
        feed = self.target is not None and self.id is not None
        partial = (self.channel is None) != (self.offset is None) or (self.target is None) != (self.id is None)
        if partial or [message, self.username is not None, feed].count(True) != 1:
            raise ValueError('report a message ({"channel", "offset"}), a member ({"username"}) '
                             'or a post or comment ({"target", "id"})')
        return self


class ResolveBody(BaseModel):
    action: Literal["dismiss", "delete", "mute", "ban"]
    minutes: int | None = Field(default=None, ge=1, le=MAX_MINUTES)
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _timed_mutes(self) -> ResolveBody:
        if self.action == "mute" and self.minutes is None:
            raise ValueError("a mute is timed: give minutes")
        return self


# --- what the routes answer (the dicts are built by `Sanctions.listing/describe` and `_report_rows`) ---

SanctionKind = Literal["mute", "ban"]
Resolution = Literal["dismiss", "delete", "mute", "ban"]


class Sanction(Closed):
    """A sanction in force (`Sanctions.listing`): `channel` null is site-wide, `until` null permanent."""

    id: int
    kind: SanctionKind
    username: str
    channel_id: int | None
    channel: str | None
    until: datetime | None
    reason: str


class SanctionList(Closed):
    """At most 200, newest first."""

    sanctions: list[Sanction]

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"sanctions": [
        {"id": 7, "kind": "mute", "username": "bob", "channel_id": 3, "channel": "room:general", "until": When,
         "reason": "spam"},
        {"id": 6, "kind": "ban", "username": "eve", "channel_id": None, "channel": None, "until": None,
         "reason": "cheating"}]}]})


class Imposed(Closed):
    """`Sanctions.describe` plus who: the same object the member's own channel gets as `sanction`."""

    id: int
    kind: SanctionKind
    channel: str | None
    until: datetime | None
    reason: str
    username: str


class SlowModeSet(Closed):
    channel: str
    slow_mode: int  # seconds between a member's messages; 0 is off


class RoomRoleSet(Closed):
    channel: str
    username: str
    role: Literal["moderator", "member"]


class ReportFiled(Closed):
    id: int


class ReportedItem(Closed):
    """A reported feed post or comment."""

    kind: Literal["post", "comment"]
    id: int


class Report(Closed):
    """`_report_rows`: what was reported and by whom. `reporter` and `user` are null once those
    accounts are gone; `channel` and `offset` only for a chat message, `target` only for a feed
    post or comment; `text` is the reported message's or post's text while it exists."""

    id: int
    status: Literal["open", "resolved"]
    reason: str
    reporter: str | None
    user: str | None
    channel: str | None
    offset: int | None
    text: str | None
    target: ReportedItem | None
    resolution: Resolution | None
    created_at: datetime


class ReportQueue(Closed):
    """Newest first; pass `next_before` back as `before` for the next page (null on the last)."""

    reports: list[Report]
    next_before: int | None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reports": [
        {"id": 12, "status": "open", "reason": "rude", "reporter": "alice", "user": "bob",
         "channel": "room:general", "offset": 345, "text": "something rude", "target": None,
         "resolution": None, "created_at": When},
        {"id": 11, "status": "open", "reason": "spam", "reporter": "alice", "user": "carol", "channel": None,
         "offset": None, "text": "buy gold", "target": {"kind": "post", "id": 9}, "resolution": None,
         "created_at": When}], "next_before": None}]})


def _sanctions(request: Request) -> Sanctions:
    sanctions = resources_of(request).sanctions
    assert sanctions is not None  # set by Resources.build
    return sanctions


async def _member(request: Request, username: str) -> Any:
    row = await user_queries.by_username(resources_of(request).db, username)
    if row is None or row["status"] == "deleted":
        raise NotFound("No such member.", code="user_not_found")
    return row


async def _room(request: Request, name: str) -> ChannelMeta:
    """A room the caller can see (a private room they are not in is 404, as everywhere)."""
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    room = await hooks.channels.meta(name)
    principal = principal_of(request)
    if room is None or room.kind not in ("room", "private_room"):
        raise NotFound("No such room.", code="room_not_found")
    if room.private and principal.role != "admin" and await hooks.channels.member_role(
            room.id, principal.user_id) is None:
        raise NotFound("No such room.", code="room_not_found")
    return room


async def _may_act(request: Request, target: Any, room: ChannelMeta | None) -> None:
    principal = principal_of(request)
    if not await _sanctions(request).may_act(principal.user_id, principal.role, target, room):
        raise Forbidden("You cannot moderate this member here.", code="not_moderator")


@requires()
async def impose(request: Request) -> Response:
    body = await read_json(request, SanctionBody)
    room = await _room(request, body.channel) if body.channel else None
    target = await _member(request, body.username)
    await _may_act(request, target, room)
    item = await _sanctions(request).impose(principal_of(request).user_id, target, body.kind, room, body.minutes,
                                            body.reason)
    return JSONResponse({**item, "username": target["username"]}, status_code=201)


@requires("moderation.users.mute")
async def list_sanctions(request: Request) -> Response:
    username = request.query_params.get("username")
    user_id = (await _member(request, username))["id"] if username else None
    return JSONResponse({"sanctions": await _sanctions(request).listing(user_id)})


@requires()
async def lift(request: Request) -> Response:
    sanctions = _sanctions(request)
    db = resources_of(request).db
    row = await db.fetch_one("sanctions.by_id", sa.select(sanctions_table).where(
        sanctions_table.c.id == request.path_params["sanction_id"], sanctions_table.c.lifted_at.is_(None)))
    if row is None:
        raise NotFound("No such sanction in force.", code="sanction_not_found")
    room = None
    if row["channel_id"] is not None:
        name = await db.fetch_val("channels.name", sa.select(channels.c.name).where(channels.c.id == row["channel_id"]))
        room = await _room(request, name)
    target = await user_queries.by_id(db, row["user_id"])
    await _may_act(request, target, room)
    await sanctions.lift(principal_of(request).user_id, row["id"])
    return Response(status_code=204)


@requires()
async def kick(request: Request) -> Response:
    body = await read_json(request, KickBody)
    room = await _room(request, f"room:{request.path_params['name']}")
    target = await _member(request, body.username)
    await _may_act(request, target, room)
    await _sanctions(request).kick(principal_of(request).user_id, target, room, body.reason)
    return Response(status_code=204)


async def _room_staff(request: Request) -> ChannelMeta:
    room = await _room(request, f"room:{request.path_params['name']}")
    principal = principal_of(request)
    if await _sanctions(request).rank(principal.user_id, principal.role, room) <= 0:
        raise Forbidden("Only the room's owner and moderators (or site staff) do that.", code="not_moderator")
    return room


@requires()
async def slow_mode(request: Request) -> Response:
    body = await read_json(request, SlowModeBody)
    room = await _room_staff(request)
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    await hooks.channels.set_slow_mode(room, body.seconds)
    await audit.record(resources_of(request).db, "moderation.slow_mode", actor_id=principal_of(request).user_id,
                       target_type="channel", target_id=room.id, channel=room.name, seconds=body.seconds)
    return JSONResponse({"channel": room.name, "slow_mode": body.seconds})


@requires()
async def set_role(request: Request) -> Response:
    """The owner (or an admin) makes members moderators of the room and back."""
    body = await read_json(request, RoleBody)
    room = await _room(request, f"room:{request.path_params['name']}")
    principal = principal_of(request)
    hooks = resources_of(request).hooks
    assert hooks is not None  # set by Resources.build
    mine = await hooks.channels.member_role(room.id, principal.user_id)
    if principal.role != "admin" and (mine is None or mine[0] != "owner"):
        raise Forbidden("Only the room's owner appoints moderators.", code="not_room_owner")
    target = await _member(request, request.path_params["username"])
    if not await hooks.channels.set_role(room.id, target["id"], body.role):
        raise NotFound("That member is not in the room (or owns it).", code="not_a_member")
    await audit.record(resources_of(request).db, "moderation.room_role", actor_id=principal.user_id,
                       target_type="user", target_id=target["id"], channel=room.name, role=body.role)
    return JSONResponse({"channel": room.name, "username": target["username"], "role": body.role})


# --- reports ------------------------------------------------------------------------------------

@requires()
async def create_report(request: Request) -> Response:
    body = await read_json(request, ReportBody)
    principal = principal_of(request)
    resources = resources_of(request)
    hooks = resources.hooks
    assert hooks is not None  # set by Resources.build
    await limit_action(request, principal, "post")
    values: dict[str, Any] = {"reporter_id": principal.user_id, "reason": body.reason, "status": "open",
                              "created_at": utcnow()}
    if body.username is not None:
        target = await _member(request, body.username)
        values["target_user_id"] = target["id"]
    elif body.target is not None and body.id is not None:
        values["target_user_id"] = await resources.feed.report_target(
            body.target, body.id, Viewer.of(principal))
    else:
        assert body.channel is not None and body.offset is not None
        try:
            await hooks.authorize(conn_user(principal), body.channel, "history")
        except ReplyError:
            raise NotFound("No such message.", code="message_not_found") from None
        room = await hooks.channels.meta(body.channel)
        message = None if room is None else await resources.db.fetch_one("messages.target", sa.select(
            messages.c.author_id, messages.c.data).where(messages.c.channel_id == room.id,
                                                         messages.c.offset == body.offset))
        if room is None or message is None or is_event(message["data"]):
            raise NotFound("No such message.", code="message_not_found")
        values.update(channel_id=room.id, message_offset=body.offset, target_user_id=message["author_id"])
    if values.get("target_user_id") == principal.user_id:
        raise BadRequest("You cannot report yourself.", code="report_self")
    async with resources.db.transaction():
        report_id = await resources.db.fetch_val("reports.insert", reports.insert().values(**values)
                                                 .returning(reports.c.id))
        if body.target is not None:  # which post or comment: beside the shared queue's row
            await resources.db.execute("reports.feed_target", feed_report_targets.insert().values(
                report_id=report_id, target_kind=body.target, target_id=body.id))
    await audit.record(resources.db, "report.created", actor_id=principal.user_id, target_type="report",
                       target_id=report_id)
    item = (await _report_rows(request, [int(report_id)]))[0]
    await _tell_staff(request, {"type": "report", "report": item})
    return JSONResponse({"id": report_id}, status_code=201)


async def _report_rows(request: Request, ids: list[int] | None = None, status: str = "open",
                       before: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
    reporter, target = users.alias("reporter"), users.alias("target")
    query = sa.select(reports, reporter.c.username.label("reporter"), target.c.username.label("target"),
                      channels.c.name.label("channel"), messages.c.data.label("message"),
                      feed_report_targets.c.target_kind, feed_report_targets.c.target_id,
                      sa.func.coalesce(posts.c.content, post_comments.c.content).label("feed_text")).select_from(
        reports.outerjoin(reporter, reporter.c.id == reports.c.reporter_id)
        .outerjoin(target, target.c.id == reports.c.target_user_id)
        .outerjoin(channels, channels.c.id == reports.c.channel_id)
        .outerjoin(messages, sa.and_(messages.c.channel_id == reports.c.channel_id,
                                     messages.c.offset == reports.c.message_offset))
        .outerjoin(feed_report_targets, feed_report_targets.c.report_id == reports.c.id)
        .outerjoin(posts, sa.and_(feed_report_targets.c.target_kind == "post",
                                  posts.c.id == feed_report_targets.c.target_id))
        .outerjoin(post_comments, sa.and_(feed_report_targets.c.target_kind == "comment",
                                          post_comments.c.id == feed_report_targets.c.target_id)))
    if ids is not None:
        query = query.where(reports.c.id.in_(ids))
    else:
        query = query.where(reports.c.status == status)
        if before is not None:
            query = query.where(reports.c.id < before)
    rows = await resources_of(request).db.fetch_all("reports.queue", query.order_by(reports.c.id.desc()).limit(limit))
    return [{"id": r["id"], "status": r["status"], "reason": r["reason"], "reporter": r["reporter"],
             "user": r["target"], "channel": r["channel"], "offset": r["message_offset"],
             "text": (r["message"] or {}).get("text") if isinstance(r["message"], dict) else r["feed_text"],
             "target": {"kind": r["target_kind"], "id": r["target_id"]} if r["target_kind"] else None,
             "resolution": r["resolution"], "created_at": r["created_at"].isoformat()} for r in rows]


async def _tell_staff(request: Request, data: dict[str, Any]) -> None:
    """Moderators' open queues update live: staff are few, each gets it on their own channel."""
    resources = resources_of(request)
    staff = await resources.db.fetch_all("users.staff", sa.select(users.c.id).where(
        users.c.role.in_(("admin", "moderator")), users.c.status == "active"))
    assert resources.people is not None  # set by Resources.build
    for row in staff:
        await resources.people.publish(row["id"], data)


@requires("admin.reports.manage")
async def report_queue(request: Request) -> Response:
    status = request.query_params.get("status", "open")
    if status not in ("open", "resolved"):
        raise BadRequest("status is open or resolved.", code="invalid_status")
    before = query_int(request, "before", 1, 2**62)
    limit = query_int(request, "limit", 1, 100, default=50)
    items = await _report_rows(request, status=status, before=before, limit=limit)
    return JSONResponse({"reports": items, "next_before": items[-1]["id"] if len(items) == limit else None})


@requires("admin.reports.manage")
async def resolve_report(request: Request) -> Response:
    body = await read_json(request, ResolveBody)
    resources = resources_of(request)
    principal = principal_of(request)
    row = await resources.db.fetch_one("reports.by_id", sa.select(reports).where(
        reports.c.id == request.path_params["report_id"]))
    if row is None:
        raise NotFound("No such report.", code="report_not_found")
    if row["status"] != "open":
        raise BadRequest("This report is already resolved.", code="report_resolved")
    room = None
    if row["channel_id"] is not None:
        name = await resources.db.fetch_val("channels.name", sa.select(channels.c.name).where(
            channels.c.id == row["channel_id"]))
        hooks = resources.hooks
        assert hooks is not None
        meta = await hooks.channels.meta(name)
        room = meta if meta is not None and meta.kind in ("room", "private_room") else None
    feed_target = await resources.db.fetch_one("reports.feed_target", sa.select(feed_report_targets).where(
        feed_report_targets.c.report_id == row["id"]))
    if body.action == "delete" and feed_target is not None:
        await resources.feed.remove_reported(feed_target["target_kind"], feed_target["target_id"],
                                             Viewer.of(principal))
    elif body.action == "delete":
        if row["channel_id"] is None:
            raise BadRequest("A report about a member has no message to delete.", code="nothing_to_delete")
        assert resources.node is not None
        try:
            await resources.node.amend(name, "delete", row["message_offset"], conn_user(principal))
        except ReplyError as exc:
            if exc.code != "message_not_found":  # already deleted: the report is still settled
                raise Forbidden(exc.message) from None
    elif body.action in ("mute", "ban"):
        target = await user_queries.by_id(resources.db, row["target_user_id"]) if row["target_user_id"] else None
        if target is None:
            raise BadRequest("The reported member no longer exists.", code="user_not_found")
        await _may_act(request, target, room)
        await _sanctions(request).impose(principal.user_id, target, body.action, room, body.minutes,
                                         body.reason or row["reason"])
    await resources.db.execute("reports.resolve", reports.update().where(reports.c.id == row["id"]).values(
        status="resolved", resolution=body.action, resolved_by=principal.user_id, resolved_at=utcnow()))
    await audit.record(resources.db, "report.resolved", actor_id=principal.user_id, target_type="report",
                       target_id=row["id"], resolution=body.action, reason=body.reason)
    await _tell_staff(request, {"type": "report_resolved", "id": row["id"], "resolution": body.action})
    return JSONResponse((await _report_rows(request, [row["id"]]))[0])


routes = [
    api("/api/moderation/sanctions", impose, ["POST"], ok={201: Imposed}),
    api("/api/moderation/sanctions", list_sanctions, ["GET"], ok={200: SanctionList}),
    api("/api/moderation/sanctions/{sanction_id:int}", lift, ["DELETE"]),
    api("/api/rooms/{name}/kick", kick, ["POST"]),
    api("/api/rooms/{name}/slow-mode", slow_mode, ["PUT"], ok={200: SlowModeSet}),
    api("/api/rooms/{name}/members/{username}/role", set_role, ["PUT"], ok={200: RoomRoleSet}),
    api("/api/reports", create_report, ["POST"], ok={201: ReportFiled},
        errors=[(404, "post_not_found"), (404, "comment_not_found")]),  # from Feed.report_target
    api("/api/admin/reports", report_queue, ["GET"], ok={200: ReportQueue}),
    api("/api/admin/reports/{report_id:int}/resolve", resolve_report, ["POST"], ok={200: Report}),
]
