"""HTTP routes of the community's forum (docs/community.md, "Forum").

Handlers validate (pydantic, unknown fields refused) and hand over to `server/services/forum.py`,
which decides who sees what (404 for anything in a category the member may not view), keeps the
counters, publishes on the `live:` streams and awards XP. Every write counts against the `write`
rate limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import principal_of, requires
from server.errors import NotFound, ValidationFailed
from server.jsonio import JSONResponse, query_int, read_json
from server.openapi import api
from server.openapi.responses import Author, Closed
from server.ratelimit import limit_action
from server.resources import resources_of
from server.services.chat_data import control_character
from server.services.cursors import MAX_ID
from server.services.forum import Forum
from server.services.viewer import Viewer

TITLE_MAX, THREAD_MAX, REPLY_MAX = 200, 10_000, 5_000
NAME_MAX, DESCRIPTION_MAX = 64, 2_000
Rule = Literal["everyone", "members", "moderator", "admin"]


def _text(value: str) -> str:
    """Trimmed, line breaks normalised; control characters other than line breaks and tabs refused."""
    if control_character(value) is not None:
        raise ValueError("The text cannot contain control characters other than line breaks and tabs.")
    value = value.replace("\r\n", "\n").strip()
    if not value:
        raise ValueError("Write something.")
    return value


def _line(value: str) -> str:
    """A one-line field (titles, names): inner whitespace runs become one space."""
    return " ".join(_text(value).split())


Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX), AfterValidator(_line)]
ThreadText = Annotated[str, Field(min_length=1, max_length=THREAD_MAX), AfterValidator(_text)]
ReplyText = Annotated[str, Field(min_length=1, max_length=REPLY_MAX), AfterValidator(_text)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_line)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX)]


class CategoryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    view: Rule = "everyone"
    post: Rule = "members"


class CategoryChanges(BaseModel):
    """PATCH: only the fields sent change; a blank or null description clears it."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)
    view: Rule | None = None
    post: Rule | None = None

    def changes(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.model_fields_set}
        if "description" in out:
            out["description"] = (out["description"] or "").strip() or None
        return {name: value for name, value in out.items() if value is not None or name == "description"}


class ThreadBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    body: ThreadText


class ThreadChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    body: ThreadText | None = None

    @model_validator(mode="after")
    def _something(self) -> ThreadChanges:
        if self.title is None and self.body is None:
            raise ValueError("Send a new title or body.")
        return self


class ReplyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: ReplyText


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Not `Literal[1, -1, 0]`: pydantic matches literals by equality, so JSON `false`/`true` would
    # pass as 0/1 even in strict mode.
    value: Annotated[int, Field(strict=True, ge=-1, le=1)]


class Category(Closed):
    """`Forum.category_shape`: `view`/`post` are the rules of who reads and who starts threads."""

    id: int
    name: str
    slug: str
    description: str | None
    position: int
    view: str
    post: str
    threads: int
    replies: int
    last_activity_at: datetime | None
    can_post: bool

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": 1, "name": "General", "slug": "general", "description": "Anything goes", "position": 0,
        "view": "everyone", "post": "members", "threads": 12, "replies": 80,
        "last_activity_at": "2026-01-02T15:04:05.123456+00:00", "can_post": True}]})


class Categories(Closed):
    categories: list[Category]


class Thread(Closed):
    """`Forum._thread`: a deleted thread shows null `title`/`author`/`html` to all but moderators;
    `body` (the Markdown source) only to its author."""

    id: int
    category_id: int
    title: str | None
    author: Author | None
    html: str | None
    score: int
    replies: int
    views: int
    pinned: bool
    locked: bool
    deleted: bool
    edited_at: datetime | None
    created_at: datetime
    last_activity_at: datetime | None
    body: str | None = None
    my_vote: int = 0
    watching: bool = False


class Reply(Closed):
    """`Forum._reply`."""

    id: int
    thread_id: int
    author: Author | None
    html: str | None
    score: int
    deleted: bool
    edited_at: datetime | None
    created_at: datetime
    body: str | None = None
    my_vote: int = 0


class ThreadPage(Closed):
    items: list[Thread]
    next: str | None


class ReplyPage(Closed):
    items: list[Reply]
    next: str | None


class ThreadWithReplies(Closed):
    thread: Thread
    replies: ReplyPage


class Edit(Closed):
    """An earlier version (`title` only for threads)."""

    id: int
    title: str | None = None
    body: str
    html: str
    editor: Author | None
    replaced_at: datetime


class Edits(Closed):
    edits: list[Edit]


class Vote(Closed):
    score: int
    my_vote: int


class Watching(Closed):
    watching: bool


def _forum(request: Request) -> Forum:
    forum = resources_of(request).forum
    assert forum is not None  # set by Resources.build (services/forum.attach)
    return forum  # type: ignore[no-any-return]


def _viewer(request: Request) -> Viewer:
    return Viewer.of(principal_of(request))


def _id(request: Request) -> int:
    """Path ids beyond the id range are simply unknown (never a database overflow)."""
    value = int(request.path_params["id"])
    if not 0 < value < MAX_ID:
        raise NotFound()
    return value


async def _write(request: Request) -> Viewer:
    await limit_action(request, principal_of(request), "write")
    return _viewer(request)


def _limit(request: Request) -> int:
    return query_int(request, "limit", 1, 50, default=20)


# --- categories ------------------------------------------------------------------------------------

@requires()
async def list_categories(request: Request) -> Response:
    return JSONResponse({"categories": await _forum(request).categories(_viewer(request))})


@requires("admin.forum.manage")
async def create_category(request: Request) -> Response:
    body = await read_json(request, CategoryBody)
    viewer = await _write(request)
    fields = body.model_dump()
    fields["description"] = (fields["description"] or "").strip() or None
    return JSONResponse(await _forum(request).create_category(viewer, fields), status_code=201)


@requires("admin.forum.manage")
async def update_category(request: Request) -> Response:
    category_id = _id(request)
    body = await read_json(request, CategoryChanges)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).update_category(viewer, category_id, body.changes()))


@requires("admin.forum.manage")
async def delete_category(request: Request) -> Response:
    category_id = _id(request)
    await _write(request)
    await _forum(request).delete_category(category_id)
    return Response(status_code=204)


# --- threads ---------------------------------------------------------------------------------------

@requires()
async def list_threads(request: Request) -> Response:
    sort = request.query_params.get("sort") or "latest"
    if sort not in ("latest", "top", "new"):
        raise ValidationFailed(details=[{"field": "sort", "code": "literal_error",
                                         "message": "must be latest, top or new"}])
    page = await _forum(request).list_threads(_viewer(request), _id(request), sort,  # type: ignore[arg-type]
                                              request.query_params.get("cursor"), _limit(request))
    return JSONResponse(page.body())


@requires()
async def create_thread(request: Request) -> Response:
    category_id = _id(request)
    body = await read_json(request, ThreadBody)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).create_thread(viewer, category_id, body.title, body.body),
                        status_code=201)


@requires()
async def show_thread(request: Request) -> Response:
    return JSONResponse(await _forum(request).thread_page(_viewer(request), _id(request),
                                                          request.query_params.get("cursor"), _limit(request)))


@requires()
async def edit_thread(request: Request) -> Response:
    thread_id = _id(request)
    body = await read_json(request, ThreadChanges)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).edit_thread(viewer, thread_id, body.title, body.body))


@requires()
async def delete_thread(request: Request) -> Response:
    thread_id = _id(request)
    await _forum(request).delete_thread(await _write(request), thread_id)
    return Response(status_code=204)


@requires()
async def thread_edits(request: Request) -> Response:
    return JSONResponse({"edits": await _forum(request).edits(_viewer(request), "thread", _id(request))})


def _flag(flag: Literal["pinned", "locked"], on: bool, name: str) -> Any:
    """pin / unpin / lock / unlock: site moderators and admins, in categories they can see."""

    @requires("community.moderate")
    async def endpoint(request: Request) -> Response:
        thread_id = _id(request)
        viewer = await _write(request)
        return JSONResponse(await _forum(request).set_flag(viewer, thread_id, flag, on))

    endpoint.__name__ = endpoint.__qualname__ = f"{name}_thread"
    return endpoint


@requires()
async def vote_thread(request: Request) -> Response:
    thread_id = _id(request)
    body = await read_json(request, VoteBody)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).vote(viewer, "thread", thread_id, body.value))


@requires()
async def watch_thread(request: Request) -> Response:
    thread_id = _id(request)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).watch(viewer, thread_id, request.method == "POST"))


# --- replies ---------------------------------------------------------------------------------------

@requires()
async def create_reply(request: Request) -> Response:
    thread_id = _id(request)
    body = await read_json(request, ReplyBody)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).add_reply(viewer, thread_id, body.body), status_code=201)


@requires()
async def edit_reply(request: Request) -> Response:
    reply_id = _id(request)
    body = await read_json(request, ReplyBody)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).edit_reply(viewer, reply_id, body.body))


@requires()
async def delete_reply(request: Request) -> Response:
    reply_id = _id(request)
    await _forum(request).delete_reply(await _write(request), reply_id)
    return Response(status_code=204)


@requires()
async def vote_reply(request: Request) -> Response:
    reply_id = _id(request)
    body = await read_json(request, VoteBody)
    viewer = await _write(request)
    return JSONResponse(await _forum(request).vote(viewer, "reply", reply_id, body.value))


@requires()
async def reply_edits(request: Request) -> Response:
    return JSONResponse({"edits": await _forum(request).edits(_viewer(request), "reply", _id(request))})


routes: list[BaseRoute] = [
    api("/api/forum/categories", list_categories, ["GET"], ok={200: Categories}),
    api("/api/admin/forum/categories", create_category, ["POST"], ok={201: Category}),
    api("/api/admin/forum/categories/{id:int}", update_category, ["PATCH"], ok={200: Category}),
    api("/api/admin/forum/categories/{id:int}", delete_category, ["DELETE"]),
    api("/api/forum/categories/{id:int}/threads", list_threads, ["GET"], ok={200: ThreadPage}),
    api("/api/forum/categories/{id:int}/threads", create_thread, ["POST"], ok={201: Thread},
        examples={"thread": {"title": "Server rules", "body": "Be **kind**."}}),
    api("/api/forum/threads/{id:int}", show_thread, ["GET"], ok={200: ThreadWithReplies}),
    api("/api/forum/threads/{id:int}", edit_thread, ["PATCH"], ok={200: Thread}),
    api("/api/forum/threads/{id:int}", delete_thread, ["DELETE"]),
    api("/api/forum/threads/{id:int}/edits", thread_edits, ["GET"], ok={200: Edits}),
    api("/api/forum/threads/{id:int}/pin", _flag("pinned", True, "pin"), ["POST"], ok={200: Thread}),
    api("/api/forum/threads/{id:int}/unpin", _flag("pinned", False, "unpin"), ["POST"], ok={200: Thread}),
    api("/api/forum/threads/{id:int}/lock", _flag("locked", True, "lock"), ["POST"], ok={200: Thread}),
    api("/api/forum/threads/{id:int}/unlock", _flag("locked", False, "unlock"), ["POST"], ok={200: Thread}),
    api("/api/forum/threads/{id:int}/vote", vote_thread, ["POST"], ok={200: Vote}, examples={"up": {"value": 1}}),
    api("/api/forum/threads/{id:int}/watch", watch_thread, ["POST", "DELETE"], ok={200: Watching}),
    api("/api/forum/threads/{id:int}/replies", create_reply, ["POST"], ok={201: Reply},
        examples={"reply": {"body": "Agreed, @alex."}}),
    api("/api/forum/replies/{id:int}", edit_reply, ["PATCH"], ok={200: Reply}),
    api("/api/forum/replies/{id:int}", delete_reply, ["DELETE"]),
    api("/api/forum/replies/{id:int}/vote", vote_reply, ["POST"], ok={200: Vote}),
    api("/api/forum/replies/{id:int}/edits", reply_edits, ["GET"], ok={200: Edits}),
]
