"""`/api/notifications`: the signed-in user's notifications, newest first, and marking them read.

Live copies arrive on the websocket channel `user:<id>` (see docs/protocol.md): a `message` push
whose `data` is `{"type": "notification", "notification": {...}, "unread": n}`, and
`{"type": "notifications_read", "ids": [...] | "all", "unread": n}` when another tab reads some.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response

from server.auth.principal import principal_of, requires
from server.errors import NotFound, ValidationFailed
from server.jsonio import JSONResponse, read_json
from server.notifications import store
from server.openapi import api
from server.openapi.responses import Closed
from server.resources import resources_of


class ReadBody(BaseModel):
    ids: list[int] | None = Field(default=None, max_length=500)
    all: bool = False

    @model_validator(mode="after")
    def _one(self) -> ReadBody:
        if (self.ids is None) == (not self.all):
            raise ValueError("send either ids or all: true")
        return self


def _int(request: Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValidationFailed(details=[{"field": name, "code": "out_of_range",
                                         "message": f"an integer from {low} to {high}"}])
    return value


class Notification(Closed):
    """`store.item`: one notification, as listed and as pushed live."""

    id: int
    kind: str
    channel: str | None
    offset: int | None
    actor: Any
    title: str
    body: str
    url: str
    created_at: datetime
    read: bool


class NotificationPage(Closed):
    notifications: list[Notification]
    unread: int
    next_before: int | None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "unread": 1, "next_before": None, "notifications": [{
            "id": 7, "kind": "mention", "channel": "room:general", "offset": 12, "actor": {"id": 3, "username": "sam"},
            "title": "sam mentioned you", "body": "@alex look", "url": "/rooms/general#12",
            "created_at": "2026-01-02T15:04:05.123456+00:00", "read": False}]}]})


class Unread(Closed):
    unread: int


class Marked(Closed):
    marked: list[int]
    unread: int


@requires()
async def list_notifications(request: Request) -> Response:
    user_id = principal_of(request).user_id
    before = _int(request, "before", 1, 2**62, None)
    limit = _int(request, "limit", 1, 100, 30) or 30
    db = resources_of(request).db
    items = await store.page(db, user_id, before, limit)
    return JSONResponse({"notifications": items, "unread": await store.unread(db, user_id),
                         "next_before": items[-1]["id"] if len(items) == limit else None})


@requires()
async def unread(request: Request) -> Response:
    return JSONResponse({"unread": await store.unread(resources_of(request).db, principal_of(request).user_id)})


@requires()
async def mark_read(request: Request) -> Response:
    body = await read_json(request, ReadBody)
    notifications = resources_of(request).notifications
    assert notifications is not None  # set by Resources.build
    changed, count = await notifications.mark_read(
        principal_of(request).user_id, None if body.all else body.ids)
    return JSONResponse({"marked": changed, "unread": count})


@requires()
async def mark_one_read(request: Request) -> Response:
    notification_id = int(request.path_params["notification_id"])
    user_id = principal_of(request).user_id
    resources = resources_of(request)
    if not await store.exists(resources.db, user_id, notification_id):
        raise NotFound("No such notification.", code="notification_not_found")
    assert resources.notifications is not None  # set by Resources.build
    changed, count = await resources.notifications.mark_read(user_id, [notification_id])
    return JSONResponse({"marked": changed, "unread": count})


routes = [
    api("/api/notifications", list_notifications, ["GET"], ok={200: NotificationPage}),
    api("/api/notifications/unread", unread, ["GET"], ok={200: Unread}),
    api("/api/notifications/read", mark_read, ["POST"], ok={200: Marked}),
    api("/api/notifications/{notification_id:int}/read", mark_one_read, ["POST"], ok={200: Marked}),
]
