"""XP and ranks: the leaderboard, the list of ranks, and admins creating and assigning ranks."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.auth import audit
from server.auth.principal import principal_of, requires
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.db.tables import ranks, users
from server.db.types import utcnow
from server.errors import BadRequest, Conflict, NotFound
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed, Person
from server.resources import resources_of
from server.services.chat_data import control_character
from server.services.xp import LEADERBOARD_SIZE, band


class RankBody(BaseModel):
    name: str = Field(min_length=1, max_length=32)
    colour: str = Field(pattern=r"^#[0-9a-fA-F]{6}$")
    badge: str | None = Field(default=None, max_length=16)

    @field_validator("name", "badge")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and (control_character(value) is not None or not value.strip()):
            raise ValueError("Visible text without control characters.")
        return value.strip() if value else value


class AssignBody(BaseModel):
    rank_id: int | None = Field(ge=1, le=2**62)


class RankItem(Closed):
    id: int
    name: str
    colour: str
    badge: str | None


class Ranks(Closed):
    ranks: list[RankItem]


class LeaderboardEntry(Closed):
    """A place on the board: the member and their level band (`xp.band`)."""

    position: int
    xp: int
    user: Person
    level: int
    title: str
    colour: str


class Leaderboard(Closed):
    period: Literal["all", "week"]
    entries: list[LeaderboardEntry]


class RankAssigned(Closed):
    username: str
    rank_id: int | None


def _rank_json(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "colour": row["colour"], "badge": row["badge"]}


@requires()
async def leaderboard(request: Request) -> Response:
    period = request.query_params.get("period", "all")
    if period not in ("all", "week"):
        raise BadRequest("period is all or week.", code="invalid_period")
    resources = resources_of(request)
    assert resources.xp is not None and resources.people is not None  # set by Resources.build
    entries = await resources.xp.leaderboard(period, LEADERBOARD_SIZE)
    rows = {}
    if entries:
        found = await resources.db.fetch_all("users.people", sa.select(
            users.c.id, users.c.username, users.c.display_name, users.c.avatar_url, users.c.role,
            users.c.minecraft_uuid, users.c.minecraft_username, users.c.status, users.c.level).where(
            users.c.id.in_([user_id for user_id, _ in entries])))
        rows = {r["id"]: r for r in found if r["status"] == "active"}
    listed = [(user_id, xp) for user_id, xp in entries if user_id in rows]
    return JSONResponse({"period": period, "entries": [
        {"position": n, "xp": xp, "user": resources.people.person(rows[user_id]), **band(rows[user_id]["level"])}
        for n, (user_id, xp) in enumerate(listed, start=1)]})


@requires()
async def list_ranks(request: Request) -> Response:
    rows = await resources_of(request).db.fetch_all("ranks.list", sa.select(ranks).order_by(ranks.c.id))
    return JSONResponse({"ranks": [_rank_json(r) for r in rows]})


@requires("admin.users.manage")
async def create_rank(request: Request) -> Response:
    body = await read_json(request, RankBody)
    db = resources_of(request).db
    try:
        rank_id = await db.fetch_val("ranks.insert", ranks.insert().values(
            name=body.name, colour=body.colour.lower(), badge=body.badge, created_at=utcnow()).returning(ranks.c.id))
    except UniqueViolation:
        raise Conflict("A rank with that name exists.", code="rank_exists") from None
    await audit.record(db, "rank.created", actor_id=principal_of(request).user_id, target_type="rank",
                       target_id=rank_id, name=body.name)
    row = await db.fetch_one("ranks.by_id", sa.select(ranks).where(ranks.c.id == rank_id))
    return JSONResponse(_rank_json(row), status_code=201)


@requires("admin.users.manage")
async def assign_rank(request: Request) -> Response:
    body = await read_json(request, AssignBody)
    db = resources_of(request).db
    user = await user_queries.by_username(db, request.path_params["username"])
    if user is None:
        raise NotFound("No such member.", code="user_not_found")
    if body.rank_id is not None and await db.fetch_val("ranks.exists", sa.select(ranks.c.id).where(
            ranks.c.id == body.rank_id)) is None:
        raise NotFound("No such rank.", code="rank_not_found")
    await user_queries.update(db, user["id"], rank_id=body.rank_id)
    auth = resources_of(request).auth
    if auth is not None:
        await auth.user_changed(user["id"])  # cached identities drop it: chat shows the rank on reconnect
    await audit.record(db, "rank.assigned", actor_id=principal_of(request).user_id, target_type="user",
                       target_id=user["id"], rank_id=body.rank_id)
    return JSONResponse({"username": user["username"], "rank_id": body.rank_id})


routes = [
    api("/api/leaderboard", leaderboard, ["GET"], ok={200: Leaderboard}),
    api("/api/ranks", list_ranks, ["GET"], ok={200: Ranks}),
    api("/api/admin/ranks", create_rank, ["POST"], ok={201: RankItem}),
    api("/api/admin/users/{username}/rank", assign_rank, ["PUT"], ok={200: RankAssigned}),
]
