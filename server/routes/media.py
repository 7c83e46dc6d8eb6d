"""Avatar upload and the media files it produces.

- `PUT /api/users/me/avatar`: the body is the image itself (PNG, JPEG or WebP, at most
  AVATAR_MAX_BYTES; the PWA sends the File with fetch). It is decoded and re-encoded off the event
  loop (server/media/avatars.py); a refusal is a 422 field error on `avatar`, an oversized body a
  413 with the same field. Answers `{"avatar": {"small", "large"}}`.
- `DELETE /api/users/me/avatar`: back to the Minecraft head, else initials (204).
- `GET /media/avatars/<key>-<64|256>.webp`: the files, public (the names are unguessable content
  hashes and avatars are public within the community) and cached for a year, since a name's
  content never changes.

Both writes are cookie- or Bearer-authenticated like every other write (`@requires`: cookie
callers must send the CSRF header), tell the member's other tabs on `user:<id>` (`profile` with
the new `avatar`), and delete the previous upload's files once no member uses them (identical
pictures share a key).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import principal_of, requires
from server.db.queries import users as user_queries
from server.db.tables import users
from server.errors import NotFound, PayloadTooLarge, ServiceUnavailable, ValidationFailed
from server.jsonio import JSONResponse
from server.media.avatars import (
    OUTPUT_SIZES,
    AvatarRejected,
    AvatarStore,
    KeyedFiles,
    ProcessedAvatar,
    process_avatar,
)
from server.media.urls import avatar_urls, is_avatar_key, uploaded_avatar
from server.middleware.rate_limit import route_limit
from server.observability.logging import get_logger
from server.openapi import IMAGE_FILE, IMAGE_UPLOAD, api
from server.openapi.responses import Closed
from server.resources import resources_of
from server.services.people import People
from server.settings import Settings

log = get_logger("vonix.media")

class AvatarSet(Closed):
    """The new picture's URLs by size name."""

    avatar: dict[str, str]


AVATAR_PATH = "/api/users/me/avatar"
# Decoding is the costliest thing a member can ask for: a few tries a minute, not a loop.
# RATE_LIMIT_ROUTES ("PUT /api/users/me/avatar=N/S") replaces it.
UPLOAD_LIMIT = "10/600"
# Decodes at once per process: bounds memory (an image of MAX_PIXELS is ~64 MB while resized).
PROCESSING_SLOTS = 2
SERVED_NAME = re.compile(r"([0-9a-f]{64})-(" + "|".join(str(size) for size in OUTPUT_SIZES) + r")\.webp")
IMMUTABLE = "public, max-age=31536000, immutable"


def body_allowances(settings: Settings) -> dict[str, int]:
    """Paths whose bodies may exceed MAX_BODY_BYTES, and by how much (BodyLimitMiddleware)."""
    return {AVATAR_PATH: settings.avatar_max_bytes}


def _field_error(code: str, message: str) -> dict[str, str]:
    return {"field": "avatar", "code": code, "message": message}


def _store(request: Request) -> AvatarStore:
    return AvatarStore(resources_of(request).settings.media_path)


def _people(request: Request) -> People:
    people = resources_of(request).people
    assert people is not None  # set by Resources.build
    return people


def _slots(request: Request) -> asyncio.Semaphore:
    """The app's decode semaphore, made on first use inside the serving event loop."""
    slots: asyncio.Semaphore | None = getattr(request.app.state, "avatar_slots", None)
    if slots is None:
        slots = asyncio.Semaphore(PROCESSING_SLOTS)
        request.app.state.avatar_slots = slots
    return slots


async def _read_upload(request: Request, limit: int) -> bytes:
    """The raw body; over the limit, the 413 also names the field so the form can show it."""
    try:
        return await request.body()
    except PayloadTooLarge:
        message = f"The image is larger than {limit} bytes."
        raise PayloadTooLarge(message, details=[_field_error("too_large", message)]) from None


async def _process(request: Request, data: bytes, limit: int) -> ProcessedAvatar:
    async with _slots(request):
        try:
            return await asyncio.to_thread(process_avatar, data, limit)
        except AvatarRejected as exc:
            raise ValidationFailed(details=[_field_error(exc.code, exc.message)]) from None


async def _save(request: Request, avatar: ProcessedAvatar) -> None:
    """Files first, then the row: a stored key always has its files."""
    try:
        await asyncio.to_thread(_store(request).save, avatar)
    except OSError as exc:
        log.error("avatar_store_failed", error=exc.__class__.__name__, reason=exc.strerror)
        raise ServiceUnavailable("Avatars cannot be stored right now.", code="media_unavailable") from None


async def _swap(request: Request, user_id: int, key: str | None) -> Any:
    """Point the member at `key` (None: no upload); returns their row as it was before."""
    db = resources_of(request).db
    row = await user_queries.by_id(db, user_id)
    if row is None:
        raise NotFound("No such member.", code="user_not_found")
    await user_queries.update(db, user_id, avatar_url=key)
    return row


async def _release(request: Request, key: str | None, keep: str | None = None) -> None:
    """Delete an upload's files once no member uses its key any more (the row is already saved)."""
    if key is None or not is_avatar_key(key) or key == keep:
        return
    in_use = await resources_of(request).db.fetch_val(
        "avatars.key_in_use", sa.select(users.c.id).where(users.c.avatar_url == key).limit(1))
    if in_use is not None:
        return
    try:
        await asyncio.to_thread(_store(request).delete, key)
    except OSError as exc:  # a leftover file wastes a few KB; the change itself is done
        log.warning("avatar_delete_failed", error=exc.__class__.__name__, reason=exc.strerror)


@route_limit(UPLOAD_LIMIT)
@requires()
async def upload_avatar(request: Request) -> Response:
    user_id = principal_of(request).user_id
    limit = resources_of(request).settings.avatar_max_bytes
    avatar = await _process(request, await _read_upload(request, limit), limit)
    await _save(request, avatar)
    previous = await _swap(request, user_id, avatar.key)
    await _release(request, previous["avatar_url"], keep=avatar.key)
    urls = uploaded_avatar(avatar.key)
    await _people(request).publish(user_id, {"type": "profile", "avatar": urls})
    await _people(request).check_profile_complete(user_id)
    log.info("avatar_changed", key=avatar.key[:12])
    return JSONResponse({"avatar": urls})


@requires()
async def delete_avatar(request: Request) -> Response:
    user_id = principal_of(request).user_id
    before = await _swap(request, user_id, None)
    if before["avatar_url"] is not None:
        await _release(request, before["avatar_url"])
        fallback = avatar_urls(resources_of(request).settings.minecraft_avatar_url, {
            "avatar_url": None, "minecraft_uuid": before["minecraft_uuid"],
            "minecraft_username": before["minecraft_username"]})
        await _people(request).publish(user_id, {"type": "profile", "avatar": fallback})
    return Response(status_code=204)


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in tags or "*" in tags


async def serve_keyed_file(request: Request, store: KeyedFiles, served: re.Pattern[str]) -> Response:
    """`/media/<kind>/<key>-<size>.webp`: public, since the names are unguessable content hashes,
    and cached forever, since a name never changes content."""
    match = served.fullmatch(request.path_params["name"])
    if match is None:
        raise NotFound()
    key, size = match[1], int(match[2])
    data = await asyncio.to_thread(store.read, key, size)
    if data is None:
        raise NotFound()
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{key}-{size}"'}
    if _not_modified(request, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/webp", headers=headers)


async def serve_avatar(request: Request) -> Response:
    return await serve_keyed_file(request, _store(request), SERVED_NAME)


routes: list[BaseRoute] = [
    api(AVATAR_PATH, upload_avatar, ["PUT"], body_media=IMAGE_UPLOAD, ok={200: AvatarSet}),
    api(AVATAR_PATH, delete_avatar, ["DELETE"]),
    api("/media/avatars/{name}", serve_avatar, ["GET", "HEAD"], ok=IMAGE_FILE),
]
