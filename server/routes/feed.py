"""HTTP routes of the social feed (docs/community.md, "Social feed").

Handlers validate and hand over to `server/services/feed.py`, which decides who sees what (404 for
anything a member may not see), keeps the counters and publishes on the `live:` streams. Post
pictures are decoded off the event loop (server/media/post_images.py) and served, like avatars,
from unguessable content-hash names cached for a year.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import principal_of, requires
from server.errors import NotFound, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType, ValidationFailed
from server.jsonio import JSONResponse, query_int, read_json
from server.media.post_images import WIDTHS, PostImageRejected, PostImageStore, ProcessedImage, process_post_image
from server.middleware.rate_limit import route_limit
from server.observability.logging import get_logger
from server.openapi import IMAGE_FILE, IMAGE_UPLOAD, api
from server.openapi.responses import Author, Closed, Open
from server.ratelimit import limit_action
from server.resources import resources_of
from server.routes.media import _slots, serve_keyed_file
from server.services.chat_data import control_character
from server.services.cursors import MAX_ID, decode_id
from server.services.feed import Feed
from server.services.viewer import Viewer

log = get_logger("vonix.feed")

POST_MAX, COMMENT_MAX = 2000, 1000
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
UPLOAD_LIMIT = "20/600"  # decoding is costly: a few pictures a minute (RATE_LIMIT_ROUTES overrides)
SERVED_NAME = re.compile(r"([0-9a-f]{64})-(" + "|".join(str(w) for w in WIDTHS) + r")\.webp")


def _text(value: str) -> str:
    """Trimmed, line breaks normalised; control characters other than line breaks and tabs refused."""
    value = value.replace("\r\n", "\n").strip()
    if control_character(value) is not None:
        raise ValueError("The text cannot contain control characters other than line breaks and tabs.")
    if not value:
        raise ValueError("Write something.")
    return value


PostText = Annotated[str, Field(min_length=1, max_length=POST_MAX), AfterValidator(_text)]
CommentText = Annotated[str, Field(min_length=1, max_length=COMMENT_MAX), AfterValidator(_text)]


class PostBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: PostText
    visibility: Literal["public", "friends"] = "public"
    group_id: int | None = Field(default=None, ge=1, lt=MAX_ID)


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: CommentText


class PostImage(Open):
    """`image_urls` (`url`: the large file, `small`: the narrow one) and the picture's size."""

    url: str
    small: str
    width: int
    height: int


class Post(Closed):
    """`Feed.shape_posts`: `author` is null once the author's account is gone."""

    id: int
    author: Author | None
    content: str
    image: PostImage | None
    visibility: Literal["public", "friends"]
    group_id: int | None
    likes: int
    liked: bool
    comments: int
    created_at: datetime
    can_delete: bool

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": 9, "content": "Hello", "image": None, "visibility": "public", "group_id": None, "likes": 2,
        "liked": False, "comments": 0, "created_at": "2026-01-02T15:04:05.123456+00:00", "can_delete": True,
        "author": {"username": "alex", "display_name": None, "avatar": None, "role": "member", "level": 3,
                   "rank": None}}]})


class Comment(Closed):
    """`Feed.shape_comments`."""

    id: int
    post_id: int
    author: Author | None
    content: str
    likes: int
    liked: bool
    created_at: datetime
    can_delete: bool


class PostPage(Closed):
    """A keyset page: pass `next` back as `cursor`; null on the last page."""

    items: list[Post]
    next: str | None


class CommentPage(Closed):
    items: list[Comment]
    next: str | None


class Likes(Closed):
    likes: int
    liked: bool


def _feed(request: Request) -> Feed:
    feed = resources_of(request).feed
    assert feed is not None  # set by Resources.build (services/feed.attach)
    return feed  # type: ignore[no-any-return]


def _viewer(request: Request) -> Viewer:
    principal = principal_of(request)
    return Viewer.of(principal)


def _id(request: Request, name: str = "id") -> int:
    """Path ids beyond the id range are simply unknown (never a database overflow)."""
    value = int(request.path_params[name])
    if not 0 < value < MAX_ID:
        raise NotFound()
    return value


async def _write(request: Request) -> Viewer:
    await limit_action(request, principal_of(request), "write")
    return _viewer(request)


# --- posts ---------------------------------------------------------------------------------------

@requires()
async def list_posts(request: Request) -> Response:
    limit = query_int(request, "limit", 1, 50, default=20)
    cursor = decode_id(request.query_params.get("cursor"))
    group = query_int(request, "group", 1, MAX_ID - 1)
    if group is not None:
        return JSONResponse((await _feed(request).group_feed(_viewer(request), group, cursor, limit)).body())
    which = request.query_params.get("feed", "everyone")
    if which not in ("friends", "everyone"):
        raise ValidationFailed(details=[{"field": "feed", "code": "literal_error",
                                         "message": "Input should be 'friends' or 'everyone'"}])
    return JSONResponse((await _feed(request).feed(_viewer(request), which, cursor, limit)).body())


@requires()
async def create_post(request: Request) -> Response:
    body = await read_json(request, PostBody)
    if body.group_id is not None and body.visibility != "public":
        raise ValidationFailed(details=[{"field": "visibility", "code": "group_visibility",
                                         "message": "A group's posts are seen by whom the group lets read."}])
    viewer = await _write(request)
    post = await _feed(request).create(viewer, body.content, body.visibility, body.group_id)
    return JSONResponse(post, status_code=201)


@requires()
async def show_post(request: Request) -> Response:
    viewer = _viewer(request)
    row = await _feed(request).readable_post(_id(request), viewer)
    return JSONResponse((await _feed(request).shape_posts([row], viewer))[0])


@requires()
async def delete_post(request: Request) -> Response:
    viewer = await _write(request)
    await _feed(request).delete_post(_id(request), viewer)
    return Response(status_code=204)


# --- likes ---------------------------------------------------------------------------------------

@requires()
async def like_post(request: Request) -> Response:
    viewer = await _write(request)
    return JSONResponse(await _feed(request).like_post(_id(request), viewer, request.method == "POST"))


@requires()
async def like_comment(request: Request) -> Response:
    viewer = await _write(request)
    return JSONResponse(await _feed(request).like_comment(_id(request), viewer, request.method == "POST"))


# --- comments ------------------------------------------------------------------------------------

@requires()
async def list_comments(request: Request) -> Response:
    limit = query_int(request, "limit", 1, 50, default=20)
    cursor = decode_id(request.query_params.get("cursor"))
    page = await _feed(request).comments(_id(request), _viewer(request), cursor, limit)
    return JSONResponse(page.body())


@requires()
async def create_comment(request: Request) -> Response:
    body = await read_json(request, CommentBody)
    viewer = await _write(request)
    return JSONResponse(await _feed(request).add_comment(_id(request), viewer, body.content), status_code=201)


@requires()
async def delete_comment(request: Request) -> Response:
    viewer = await _write(request)
    await _feed(request).delete_comment(_id(request), viewer)
    return Response(status_code=204)


# --- pictures ------------------------------------------------------------------------------------

def _image_error(code: str, message: str) -> dict[str, str]:
    return {"field": "image", "code": code, "message": message}


def _store(request: Request) -> PostImageStore:
    return PostImageStore(resources_of(request).settings.media_path)


async def _read_image(request: Request, limit: int) -> bytes:
    """The raw body, checked to be declared a picture; over the limit a 413 naming the field."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in IMAGE_TYPES:
        raise UnsupportedMediaType("Send the picture as image/png, image/jpeg or image/webp.")
    try:
        return await request.body()
    except PayloadTooLarge:
        message = f"The image is larger than {limit} bytes."
        raise PayloadTooLarge(message, details=[_image_error("too_large", message)]) from None


async def _process(request: Request, data: bytes, limit: int) -> ProcessedImage:
    """Decoded in a thread, sharing the avatars' decode slots (one memory bound per process)."""
    async with _slots(request):
        try:
            return await asyncio.to_thread(process_post_image, data, limit)
        except PostImageRejected as exc:
            raise ValidationFailed(details=[_image_error(exc.code, exc.message)]) from None


@route_limit(UPLOAD_LIMIT)
@requires()
async def upload_image(request: Request) -> Response:
    """Author only, once per post: files first, then the row (a stored key always has its files)."""
    viewer = await _write(request)
    feed = _feed(request)
    row = await feed.post_for_image(_id(request), viewer)
    limit = resources_of(request).settings.post_image_max_bytes
    image = await _process(request, await _read_image(request, limit), limit)
    try:
        await asyncio.to_thread(_store(request).save, image)
    except OSError as exc:
        log.error("post_image_store_failed", error=exc.__class__.__name__, reason=exc.strerror)
        raise ServiceUnavailable("Pictures cannot be stored right now.", code="media_unavailable") from None
    return JSONResponse(await feed.set_image(row, viewer, image))


async def serve_image(request: Request) -> Response:
    return await serve_keyed_file(request, _store(request), SERVED_NAME)


routes: list[BaseRoute] = [
    api("/api/posts", list_posts, ["GET"], ok={200: PostPage}),
    api("/api/posts", create_post, ["POST"], ok={201: Post},
        examples={"public": {"content": "Hello"}, "friends": {"content": "Hi friends", "visibility": "friends"}}),
    api("/api/posts/{id:int}", show_post, ["GET"], ok={200: Post}),
    api("/api/posts/{id:int}", delete_post, ["DELETE"]),
    api("/api/posts/{id:int}/image", upload_image, ["PUT"], body_media=IMAGE_UPLOAD, ok={200: Post}),
    api("/api/posts/{id:int}/like", like_post, ["POST", "DELETE"], ok={200: Likes}),
    api("/api/posts/{id:int}/comments", list_comments, ["GET"], ok={200: CommentPage}),
    api("/api/posts/{id:int}/comments", create_comment, ["POST"], ok={201: Comment},
        examples={"comment": {"content": "Nice!"}}),
    api("/api/comments/{id:int}", delete_comment, ["DELETE"]),
    api("/api/comments/{id:int}/like", like_comment, ["POST", "DELETE"], ok={200: Likes}),
    api("/media/posts/{name}", serve_image, ["GET", "HEAD"], ok=IMAGE_FILE),
]
