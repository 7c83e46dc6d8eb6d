"""HTTP routes of the game servers' list and live status (docs/minecraft.md).

Public (no sign-in): the list, one server, its history and its favicon, each with a short
`Cache-Control` (the live changes come on `status:servers`). Admin (`admin.servers.manage`):
list, create, edit, delete and reorder. Bodies are validated here (pydantic, unknown fields
refused, one field error per bad field); server/minecraft/status.py does the rest.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import requires
from server.errors import NotFound, ValidationFailed
from server.jsonio import JSONResponse, read_json
from server.minecraft.status import StatusService
from server.openapi import Media, api
from server.openapi.responses import Closed, Open
from server.resources import resources_of
from server.services.chat_data import control_character

LIST_CACHE = {"Cache-Control": "public, max-age=5"}
HISTORY_CACHE = {"Cache-Control": "public, max-age=60"}
NO_STORE = {"Cache-Control": "no-store"}
ICON_FOREVER = "public, max-age=31536000, immutable"
ICON_SHORT = "public, max-age=300"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _line(value: str) -> str:
    if control_character(value) is not None or "\n" in value or "\t" in value:
        raise ValueError("The text cannot contain control characters or line breaks.")
    return " ".join(value.split())


def _name(value: str) -> str:
    value = _line(value)
    if not 3 <= len(value) <= 100:
        raise ValueError("A server's name has 3 to 100 characters.")
    return value


def _description(value: str) -> str:
    value = value.replace("\r\n", "\n").strip()
    if control_character(value) is not None:
        raise ValueError("The text cannot contain control characters other than line breaks and tabs.")
    return value


def _host(value: str) -> str:
    """A host name (letters, digits, dashes; dot-separated labels) or an IPv4/IPv6 address."""
    value = value.strip().rstrip(".").lower()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.split(".")
    if not value or len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError("Give a host name (play.example.net) or an IP address, without a port or scheme.")
    return value


def _url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or control_character(value) is not None \
            or any(c.isspace() for c in value):
        raise ValueError("Give a full http:// or https:// address.")
    return value


Name = Annotated[str, Field(max_length=100), AfterValidator(_name)]
Description = Annotated[str, Field(max_length=500), AfterValidator(_description)]
Host = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_host)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Label = Annotated[str, Field(max_length=64), AfterValidator(_line)]
Modpack = Annotated[str, Field(max_length=100), AfterValidator(_line)]
Url = Annotated[str | None, Field(max_length=500), AfterValidator(_url)]
Position = Annotated[int, Field(ge=0, le=1_000_000, strict=True)]


class ServerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    host: Host
    port: Port | None = None  # the edition's default (25565 Java, 19132 Bedrock)
    edition: Literal["java", "bedrock"] = "java"
    description: Description = ""
    version: Label = ""
    modpack: Modpack = ""
    map_url: Url = None
    modpack_url: Url = None
    position: Position | None = None  # after the last one


class ServerPatch(BaseModel):
    """Only the fields sent change; `null` clears the URLs (and the port goes back to the default)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    host: Host | None = None
    port: Port | None = None
    edition: Literal["java", "bedrock"] | None = None
    description: Description | None = None
    version: Label | None = None
    modpack: Modpack | None = None
    map_url: Url = None
    modpack_url: Url = None
    position: Position | None = None


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, strict=True)]] = Field(min_length=1, max_length=1000)


NULLABLE = ("map_url", "modpack_url", "port")


# --- responses: `ServerOut` of docs/minecraft.md (built by StatusService.shape) ----------------------
class Players(Open):
    online: int
    max: int
    sample: list[str]
    exact: bool


class ServerStatus(Open):
    """The latest poll as stored (open: older polls may carry fields no longer written)."""

    online: bool
    players: Players
    version: str | None
    motd_html: str
    motd_text: str
    favicon_url: str | None
    checked_at: str | None
    reason: str | None


class Uptime(Closed):
    """Percent of polls that found the server online (null without polls in the range)."""

    day: float | None = Field(alias="24h")
    week: float | None = Field(alias="7d")


class ServerOut(Closed):
    id: int
    name: str
    description: str
    host: str
    port: int
    address: str
    edition: Literal["java", "bedrock"]
    version: str
    modpack: str
    map_url: str | None
    modpack_url: str | None
    position: int
    status: ServerStatus | None
    uptime: Uptime

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": 1, "name": "Survival", "description": "Vanilla+ with land claims", "host": "play.vonix.net",
        "port": 25565, "address": "play.vonix.net", "edition": "java", "version": "1.21.4", "modpack": "",
        "map_url": "https://map.vonix.net/", "modpack_url": None, "position": 0, "uptime": {"24h": 99.5, "7d": 98.1},
        "status": {"online": True, "players": {"online": 3, "max": 20, "sample": ["Steve", "Alex"], "exact": False},
                   "version": "Paper 1.21.4", "motd_html": "Vonix Survival", "motd_text": "Vonix Survival",
                   "latency_ms": 12.5, "favicon_url": "/api/servers/1/favicon?v=3f2a9c0d1e2b4a6f",
                   "checked_at": "2026-12-04T16:00:00Z", "reason": None}}]})


class ServerList(Closed):
    servers: list[ServerOut]


class ChartPoint(Closed):
    at: str
    online: float
    players: float
    max: int


class Chart(Closed):
    """`History.chart`: buckets without polls are left out (a gap in the chart)."""

    range: Literal["24h", "7d"]
    uptime: float | None
    points: list[ChartPoint]


def _service(request: Request) -> StatusService:
    service = resources_of(request).mc_status
    assert service is not None  # set by Resources.build
    return service  # type: ignore[no-any-return]


def _id(request: Request) -> int:
    return int(request.path_params["id"])


# --- public ----------------------------------------------------------------------------------------

async def list_servers(request: Request) -> Response:
    return JSONResponse({"servers": await _service(request).snapshot()}, headers=LIST_CACHE)


async def show_server(request: Request) -> Response:
    server = await _service(request).one(_id(request))
    if server is None:
        raise NotFound("No such server.")
    return JSONResponse(server, headers=LIST_CACHE)


async def server_history(request: Request) -> Response:
    range_ = request.query_params.get("range", "24h")
    if range_ not in ("24h", "7d"):
        raise ValidationFailed(details=[{"field": "range", "code": "literal_error", "message": "24h or 7d"}])
    return JSONResponse(await _service(request).chart(_id(request), range_), headers=HISTORY_CACHE)


async def server_favicon(request: Request) -> Response:
    icon = await _service(request).favicon(_id(request))
    if icon is None:
        raise NotFound("This server has no icon.")
    data, hashed = icon
    etag = f'"{hashed}"'
    cache = ICON_FOREVER if request.query_params.get("v") == hashed else ICON_SHORT
    headers = {"Cache-Control": cache, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if etag in {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/png", headers=headers)


# --- admin -----------------------------------------------------------------------------------------

@requires("admin.servers.manage")
async def admin_list(request: Request) -> Response:
    return JSONResponse({"servers": await _service(request).snapshot()}, headers=NO_STORE)


@requires("admin.servers.manage")
async def admin_create(request: Request) -> Response:
    body = await read_json(request, ServerBody)
    server = await _service(request).create(body.model_dump())
    return JSONResponse(server, status_code=201, headers=NO_STORE)


@requires("admin.servers.manage")
async def admin_update(request: Request) -> Response:
    body = await read_json(request, ServerPatch)
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name not in NULLABLE:
            raise ValidationFailed(details=[{"field": name, "code": "missing", "message": "cannot be null"}])
        changes[name] = value
    return JSONResponse(await _service(request).update(_id(request), changes), headers=NO_STORE)


@requires("admin.servers.manage")
async def admin_delete(request: Request) -> Response:
    await _service(request).delete(_id(request))
    return Response(status_code=204)


@requires("admin.servers.manage")
async def admin_order(request: Request) -> Response:
    body = await read_json(request, OrderBody)
    if len(set(body.ids)) != len(body.ids):
        raise ValidationFailed(details=[{"field": "ids", "code": "duplicate", "message": "each id once"}])
    return JSONResponse({"servers": await _service(request).reorder(body.ids)}, headers=NO_STORE)


routes: list[BaseRoute] = [
    api("/api/servers", list_servers, ["GET"], ok={200: ServerList}),
    api("/api/servers/{id:int}", show_server, ["GET"], ok={200: ServerOut}),
    api("/api/servers/{id:int}/history", server_history, ["GET"], ok={200: Chart}),
    api("/api/servers/{id:int}/favicon", server_favicon, ["GET"],
        ok={200: Media("image/png", "The server's icon (64 x 64 PNG).", schema={"type": "string", "format": "binary"}),
            304: Media(None, "Not modified (the ETag matched).")}),
    api("/api/admin/servers", admin_list, ["GET"], ok={200: ServerList}),
    api("/api/admin/servers", admin_create, ["POST"], ok={201: ServerOut}),
    api("/api/admin/servers/order", admin_order, ["PUT"], ok={200: ServerList}),
    api("/api/admin/servers/{id:int}", admin_update, ["PATCH"], ok={200: ServerOut}),
    api("/api/admin/servers/{id:int}", admin_delete, ["DELETE"]),
]
