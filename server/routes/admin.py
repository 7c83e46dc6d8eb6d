"""`/api/admin/*`: every route here declares an `admin.*` permission (a test enforces it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
from server.openapi.responses import Closed, Open
from server.resources import resources_of
from server.routes.auth import USERNAME


class CreateBotBody(BaseModel):
    name: str = Field(pattern=USERNAME)
    scopes: list[str] | None = None


# --- responses (described for the OpenAPI document; the handlers build these dicts) ----------
class AuditEntry(Closed):
    """One `audit_log` row; `data` holds the event's own fields (`audit.record(**data)`), or null."""

    id: int
    actor_id: int | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    data: dict[str, Any] | None
    created_at: datetime


class AuditPage(Closed):
    """Newest first; `next_before` is the `before=` of the next page (null on the last one)."""

    entries: list[AuditEntry]
    next_before: int | None


BotScope = Literal["subscribe", "publish", "history", "presence"]  # `bots.ALLOWED_SCOPES`


class CreatedBotOut(Closed):
    """The new bot; `token` is shown this once (only its hash is stored)."""

    id: int
    user_id: int
    name: str
    scopes: list[BotScope]
    token: str


class PoolState(Open):
    """Connections of the pool: `in_use` and `max` are PostgreSQL's only."""

    kind: Literal["sqlite", "postgresql"]
    size: int
    idle: int


class QueryTiming(Closed):
    """A named statement's calls and times since the process started."""

    query: str
    calls: int
    total_ms: float
    mean_ms: float


class SlowQuery(Closed):
    """One statement over the slow threshold (`at`: Unix time)."""

    query: str
    duration_ms: float
    at: float


class TableSize(Open):
    """A table's row count; PostgreSQL adds `bytes`, `seq_scan` and `idx_scan`."""

    name: str
    rows: int


class IndexInfo(Open):
    """An index; PostgreSQL adds `scans`, `bytes`, `is_unique` and `is_primary`."""

    table_name: str
    name: str


class DatabaseReport(Open):
    """`db/report.py`: the same top-level keys on both dialects; `unused_indexes` is null on SQLite."""

    dialect: Literal["sqlite", "postgresql"]
    pool: PoolState
    slowest_queries: list[QueryTiming]
    recent_slow_queries: list[SlowQuery]
    slow_query_threshold_ms: float
    tables: list[TableSize]
    indexes: list[IndexInfo]
    unused_indexes: list[IndexInfo] | None
    index_usage_source: str


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
    api("/api/admin/audit", audit_log, ["GET"], ok={200: AuditPage}),
    api("/api/admin/bots", create_bot_route, ["POST"], ok={201: CreatedBotOut}),
    api("/api/admin/db", database, ["GET"], ok={200: DatabaseReport}),
]
