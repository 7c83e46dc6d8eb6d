"""Bridge health reports: `PUT /api/bridges/discord/health` (docs/bridges.md).

The Discord bridge process (`vonix discord-bridge`) reports every 15 s and on each state change,
signed in with its bot token; only bot principals may report, and when this server knows the
bridge's token (`BRIDGE_BOT_TOKEN`, shared in compose) only that token. The report is kept by
server/bridges/health.py and shown by `GET /api/admin/stats` under `"bridges"`.
"""

from __future__ import annotations

import hmac
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import bearer_token, principal_of, requires
from server.bridges.health import BridgeHealth
from server.errors import Forbidden
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed
from server.resources import resources_of
from server.services.chat_data import control_character


class HealthBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["ok", "degraded", "down"]
    gateway: Literal["connecting", "connected", "resuming", "disconnected", "failed", "stopped"]
    vonix: Literal["connected", "disconnected"] = "connected"
    queue: int = Field(ge=0, le=1_000_000)
    dropped: int = Field(default=0, ge=0)
    breaker: Literal["closed", "open", "half_open"]
    last_error: str | None = Field(default=None, max_length=300)

    @field_validator("last_error")
    @classmethod
    def _line(cls, value: str | None) -> str | None:
        if value is not None and control_character(value) is not None:
            raise ValueError("No control characters.")
        return value


class HealthReported(Closed):
    """The report is kept; `reported_at` is when (Unix seconds, the server's clock)."""

    ok: Literal[True]
    reported_at: float


@requires()
async def put_discord_health(request: Request) -> Response:
    principal = principal_of(request)
    if principal.kind != "bot":
        raise Forbidden("Only a bridge's bot account reports bridge health.", code="bots_only")
    expected = resources_of(request).settings.bridge_bot_token
    if principal.game_server_id is not None or (expected is not None and not hmac.compare_digest(
            (bearer_token(request) or "").encode(), expected.get_secret_value().encode())):
        raise Forbidden("Only the Discord bridge's own bot reports its health.", code="not_the_bridge")
    body = await read_json(request, HealthBody)
    stored = await BridgeHealth(resources_of(request)).put(
        "discord", {**body.model_dump(), "bot": principal.username})
    return JSONResponse({"ok": True, "reported_at": stored["reported_at"]})


routes: list[BaseRoute] = [
    api("/api/bridges/discord/health", put_discord_health, ["PUT"], auth="bot", ok={200: HealthReported}),
]
