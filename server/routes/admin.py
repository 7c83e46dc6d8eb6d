"""`/api/admin/*`: every route here declares an `admin.*` permission (a test enforces it)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from server.auth import audit
from server.auth.bots import ALLOWED_SCOPES, create_bot
from server.auth.principal import principal_of, requires
from server.db.report import database_report
from server.errors import ValidationFailed
from server.jsonio import JSONResponse, query_int, read_json
from server.openapi import api
from server.resources import resources_of
from server.routes.auth import USERNAME


class CreateBotBody(BaseModel):
    name: str = Field(pattern=USERNAME)
    scopes: list[str] | None = None


@requires("admin.audit.read")
async def audit_log(request: Request) -> Response:
    db = resources_of(request).db
    limit = query_int(request, "limit", 1, 500, default=50)
    before = query_int(request, "before", 1, 2**62)
    rows = await audit.page(db, before, limit, request.query_params.get("action"))
    columns = ("id", "actor_id", "action", "target_type", "target_id", "ip", "data", "created_at")
    entries = [{name: r[name] for name in columns} for r in rows]
    return JSONResponse({"entries": entries, "next_before": entries[-1]["id"] if len(entries) == limit else None})


@requires("admin.bots.manage")
async def create_bot_route(request: Request) -> Response:
    body = await read_json(request, CreateBotBody)
    unknown = sorted(set(body.scopes or []) - ALLOWED_SCOPES)
    if unknown:
        raise ValidationFailed(details=[{"field": "scopes", "code": "unknown_scope",
                                         "message": f"unknown scopes: {', '.join(unknown)}"}])
    bot = await create_bot(resources_of(request).db, body.name, body.scopes, principal_of(request).user_id)
    return JSONResponse({"id": bot.bot_id, "user_id": bot.user_id, "name": bot.name, "scopes": bot.scopes,
                         "token": bot.token}, status_code=201)


@requires("admin.db.read")
async def database(request: Request) -> Response:
    return JSONResponse(await database_report(resources_of(request).db))


routes = [
    api("/api/admin/audit", audit_log, ["GET"]),
    api("/api/admin/bots", create_bot_route, ["POST"]),
    api("/api/admin/db", database, ["GET"]),
]
