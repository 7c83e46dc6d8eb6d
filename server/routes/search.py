"""`GET /api/search`: messages in the channels you may read (ranked, highlighted, cursor-paged),
or members by name (`type=users`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import Field, RootModel
from starlette.requests import Request
from starlette.responses import Response

from server.auth.principal import principal_of, requires
from server.db.tables import users
from server.db.types import utcnow
from server.errors import NotFound, ValidationFailed
from server.jsonio import JSONResponse, query_int
from server.openapi import api
from server.openapi.responses import Closed, Person
from server.ratelimit import limit_action
from server.resources import resources_of
from server.services.chat_data import control_character
from server.services.search import QUERY_MAX, Cursor, create_search


def _invalid(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed(details=[{"field": field, "code": code, "message": message}])


def _query(request: Request) -> str:
    q = (request.query_params.get("q") or "").strip()
    if not q:
        raise _invalid("q", "missing", "say what to search for")
    if len(q) > QUERY_MAX:
        raise _invalid("q", "too_long", f"at most {QUERY_MAX} characters")
    if control_character(q) is not None:
        raise _invalid("q", "control_character", "control characters are not allowed")
    return q


class HitAuthor(Closed):
    id: int
    username: str


class MessageHit(Closed):
    channel: str
    offset: int
    highlight: str
    rank: float
    from_: HitAuthor | None = Field(alias="from")
    ts: float


class MessageHits(Closed):
    """`type=messages`: `next_cursor` is null on the last page."""

    messages: list[MessageHit]
    next_cursor: str | None


class UserHits(Closed):
    """`type=users`."""

    users: list[Person]
    next_cursor: str | None


class SearchResult(RootModel[MessageHits | UserHits]):
    """Messages or members, by `type`."""


@requires()
async def search(request: Request) -> Response:
    q = _query(request)
    kind = request.query_params.get("type", "messages")
    if kind not in ("messages", "users"):
        raise _invalid("type", "invalid", "messages or users")
    limit = query_int(request, "limit", 1, 50, default=20)
    raw_cursor = request.query_params.get("cursor")
    try:
        after = Cursor.decode(raw_cursor) if raw_cursor else None
    except ValueError:
        raise _invalid("cursor", "invalid", "pass back the next_cursor of a previous page") from None
    principal = principal_of(request)
    await limit_action(request, principal, "search")
    if kind == "users":
        return JSONResponse(await _users(request, q, after, limit))
    resources = resources_of(request)
    channel_id = None
    channel = request.query_params.get("channel")
    if channel:
        assert resources.hooks is not None  # set by Resources.build
        meta = await resources.hooks.channels.meta(channel)
        if meta is None:
            raise NotFound("No such channel.", code="channel_not_found")
        channel_id = meta.id  # whether it is readable is decided inside the query
    hits = await create_search(resources.db).messages(principal.user_id, q, channel_id, after, limit, utcnow())
    authors = {h.author_id for h in hits if h.author_id is not None}
    names = {}
    if authors:
        rows = await resources.db.fetch_all("users.names", sa.select(users.c.id, users.c.username).where(
            users.c.id.in_(authors)))
        names = {r["id"]: r["username"] for r in rows}
    return JSONResponse({
        "messages": [{"channel": h.channel, "offset": h.offset, "highlight": h.highlight, "rank": h.rank,
                      "from": {"id": h.author_id, "username": names.get(h.author_id, "deleted")}
                      if h.author_id is not None else None, "ts": h.created_at.timestamp()} for h in hits],
        "next_cursor": Cursor(hits[-1].rank, hits[-1].id).encode() if len(hits) == limit else None,
    })


async def _users(request: Request, q: str, after: Cursor | None, limit: int) -> dict[str, Any]:
    """Members whose username or display name starts with `q`: exact names first, then shorter ones.
    The rank is 2 for an exact username, 1 for another username match, 0 for a display-name match."""
    needle = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    by_name = sa.func.lower(users.c.username).like(needle + "%", escape="\\")
    # inline numbers (literal_column): asyncpg would be handed untyped parameters otherwise
    rank = sa.case((sa.func.lower(users.c.username) == q.lower(), sa.literal_column("2")),
                   (by_name, sa.literal_column("1")), else_=sa.literal_column("0"))
    query = sa.select(users.c.id, users.c.username, users.c.display_name, users.c.avatar_url, users.c.role,
                      users.c.minecraft_uuid, users.c.minecraft_username, rank.label("rank")).where(
        users.c.status == "active", sa.or_(by_name, sa.func.lower(users.c.display_name).like(
            "%" + needle + "%", escape="\\")))
    if after is not None:
        last = int(after.rank)
        query = query.where(sa.or_(rank < last, sa.and_(rank == last, users.c.id > after.id)))
    rows = await resources_of(request).db.fetch_all("search.users", query.order_by(
        rank.desc(), users.c.id).limit(limit))
    people = resources_of(request).people
    assert people is not None  # set by Resources.build
    return {"users": [people.person(r) for r in rows],
            "next_cursor": Cursor(float(rows[-1]["rank"]), rows[-1]["id"]).encode() if len(rows) == limit else None}


routes = [api("/api/search", search, ["GET"], ok={200: SearchResult})]
