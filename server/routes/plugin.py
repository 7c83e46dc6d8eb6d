"""HTTP routes of game server plugins, account linking and server API keys (docs/plugins.md).

- Plugin API (`Authorization: Bearer vxs_…`, a key scoped to one game server): link codes for
  players, "is this UUID linked, and to whom", and the online list of a game chat bridge.
- Members: link with a code, unlink, see the link; sign up with a code (anonymous).
- Admins (`admin.servers.manage`): issue (shown once), list and revoke a server's keys.

Handlers validate (pydantic, unknown fields refused, field errors) and hand over to
server/minecraft/linking.py and server/minecraft/keys.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.auth.principal import Principal, principal_of, requires, resolve
from server.auth.service import client_info
from server.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from server.jsonio import JSONResponse, read_json
from server.minecraft import keys
from server.minecraft.linking import MINECRAFT_NAME, LinkService, normalise_uuid
from server.openapi import api
from server.openapi.responses import Closed, Rank, When
from server.resources import resources_of
from server.routes.auth import Registered
from server.services.chat_data import control_character

KEY_NAME_MAX = 64
PLAYERS_MAX = 1000
USERNAME = r"^[A-Za-z0-9_]{3,32}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _minecraft_name(value: str) -> str:
    if not MINECRAFT_NAME.fullmatch(value):
        raise ValueError("A Minecraft name has 3 to 16 letters, digits or underscores.")
    return value


def _uuid(value: str) -> str:
    uuid = normalise_uuid(value)
    if uuid is None:
        raise ValueError("Not a UUID (32 hexadecimal digits, with or without dashes).")
    return uuid


def _key_name(value: str) -> str:
    if control_character(value) is not None or "\n" in value:
        raise ValueError("The name cannot contain control characters or line breaks.")
    value = " ".join(value.split())
    if not value:
        raise ValueError("Name the key (where it is used, e.g. \"Survival plugin\").")
    return value


MinecraftName = Annotated[str, Field(max_length=16), AfterValidator(_minecraft_name)]
Uuid = Annotated[str, Field(max_length=36), AfterValidator(_uuid)]
Code = Annotated[str, Field(min_length=1, max_length=16)]


class LinkCodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: MinecraftName
    uuid: Uuid


class PlayersBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    players: list[MinecraftName] = Field(max_length=PLAYERS_MAX)


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code


class SignupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    username: str | None = Field(default=None, pattern=USERNAME)  # default: the Minecraft name
    email: str = Field(max_length=254, pattern=EMAIL)
    password: str = Field(min_length=1, max_length=256)


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=KEY_NAME_MAX), AfterValidator(_key_name)]


# --- what the routes answer (built by server/minecraft/linking.py and keys.py) ----------------------

DashedUuid = Annotated[str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
LinkCodeText = Annotated[str, Field(pattern=r"^[ABCDEFGHJKMNPQRSTUVWXYZ2-9]{6}$")]
UUID_EXAMPLE = "069a79f4-44e9-4726-a5be-fca90e38aaf5"


def _absent(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # left out of the answer, never null: no `default: null` either


class LinkCode(Closed):
    """`LinkService.request_code`: the code to show the player, valid until `expires_at` (10 minutes)."""

    code: LinkCodeText
    expires_at: datetime
    name: str
    uuid: DashedUuid


class LinkedMember(Closed):
    """The member a game account is linked to; `rank` only when they have one."""

    id: int
    username: str
    rank: Rank | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_absent)


class PlayerLookup(Closed):
    """`LinkService.player`: `user` is null when the UUID is linked to nobody."""

    linked: bool
    user: LinkedMember | None


class PlayerList(Closed):
    """The online list as received."""

    players: list[str]


class LinkedMinecraft(Closed):
    """`head`: the player's head picture (MINECRAFT_AVATAR_URL), null when none is configured."""

    name: str
    uuid: DashedUuid
    head: str | None


class LinkStatus(Closed):
    """`LinkService.status`: `minecraft` is null while no game account is linked."""

    linked: bool
    minecraft: LinkedMinecraft | None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"linked": True, "minecraft": {"name": "Steve", "uuid": UUID_EXAMPLE,
                                       "head": f"https://mc-heads.net/avatar/{UUID_EXAMPLE}/64"}},
        {"linked": False, "minecraft": None}]})


class CodePreview(Closed):
    """`LinkService.peek`: the player the code is for; `username` is the suggested username (null
    when taken); `linked`: the player is linked to an account already (signing up would fail)."""

    name: str
    uuid: DashedUuid
    expires_at: datetime
    username: str | None
    linked: bool


class ServerKey(Closed):
    """`keys.key_out`: a key as lists show it (never the key itself); `created_by` null once that
    admin's account is gone."""

    id: int
    server_id: int
    name: str
    prefix: str
    created_at: datetime
    created_by: int | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked: bool


class ServerKeys(Closed):
    """Newest first, revoked ones included."""

    keys: list[ServerKey]

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"keys": [
        {"id": 4, "server_id": 1, "name": "Survival plugin", "prefix": "vxs_Ab3d", "created_at": When,
         "created_by": 1, "last_used_at": When, "revoked_at": None, "revoked": False}]}]})


class IssuedServerKey(ServerKey):
    """The new key's row and `key`, the secret itself: shown this once, only its hash is kept."""

    key: Annotated[str, Field(pattern=r"^vxs_")]


def _service(request: Request) -> LinkService:
    service: LinkService = resources_of(request).mc_link
    return service


async def _plugin(request: Request) -> Principal:
    """The caller must be a game server's plugin (its `vxs_` key)."""
    principal = await resolve(request)
    if principal is None:
        raise Unauthorized("Send the game server's API key: Authorization: Bearer vxs_…", code="unauthorized")
    if principal.game_server_id is None:
        raise Forbidden("Only a game server's API key (vxs_…) may call the plugin API.", code="server_key_required")
    return principal


# --- plugin ------------------------------------------------------------------------------------------

async def plugin_link_code(request: Request) -> Response:
    principal = await _plugin(request)
    body = await read_json(request, LinkCodeBody)
    assert principal.game_server_id is not None
    result = await _service(request).request_code(principal.game_server_id, body.name, body.uuid)
    return JSONResponse(result, status_code=201)


async def plugin_player(request: Request) -> Response:
    await _plugin(request)
    uuid = normalise_uuid(request.path_params["uuid"])
    if uuid is None:
        raise ValidationFailed(details=[{"field": "uuid", "code": "invalid",
                                         "message": "Not a UUID (32 hexadecimal digits, with or without dashes)."}])
    return JSONResponse(await _service(request).player(uuid))


async def plugin_players(request: Request) -> Response:
    """A game chat bridge's full online list (on connect and reconnect): the status becomes exact."""
    principal = await _plugin(request)
    body = await read_json(request, PlayersBody)
    assert principal.game_server_id is not None
    await _service(request).game_event(principal.game_server_id, "players", players=body.players)
    return JSONResponse({"players": body.players})


async def plugin_players_gone(request: Request) -> Response:
    """The bridge stops: the status shows the server's own samples again."""
    principal = await _plugin(request)
    assert principal.game_server_id is not None
    await _service(request).game_event(principal.game_server_id, "bridge_offline")
    return Response(status_code=204)


# --- members -----------------------------------------------------------------------------------------

@requires()
async def link_status(request: Request) -> Response:
    return JSONResponse(await _service(request).status(principal_of(request).user_id))


async def _member(request: Request) -> Principal:
    principal = principal_of(request)
    if principal.kind != "user":
        raise Forbidden("Only members link Minecraft accounts.", code="members_only")
    return principal


@requires()
async def link(request: Request) -> Response:
    principal = await _member(request)
    body = await read_json(request, CodeBody)
    return JSONResponse(await _service(request).link(principal.user_id, body.code, client_info(request).ip))


@requires()
async def unlink(request: Request) -> Response:
    principal = await _member(request)
    return JSONResponse(await _service(request).unlink(principal.user_id, client_info(request).ip))


async def code_check(request: Request) -> Response:
    """Anonymous: what signing up with this code would link (and the username it suggests)."""
    body = await read_json(request, CodeBody)
    return JSONResponse(await _service(request).peek(body.code, client_info(request).ip))


async def signup(request: Request) -> Response:
    from server.db.queries import users as user_queries

    body = await read_json(request, SignupBody)
    user = await _service(request).signup(body.code, body.username, body.email, body.password, client_info(request))
    return JSONResponse({"user": user_queries.private(user)}, status_code=201)


# --- admins ------------------------------------------------------------------------------------------

async def _server(request: Request) -> dict[str, Any]:
    server_id = request.path_params["id"]
    status = resources_of(request).mc_status
    server = await status.get(server_id) if 0 < server_id < 2**62 and status is not None else None
    if server is None:
        raise NotFound("No such game server.", code="not_found")
    return dict(server)


@requires("admin.servers.manage")
async def keys_list(request: Request) -> Response:
    server = await _server(request)
    return JSONResponse({"keys": await keys.listed(resources_of(request).db, server["id"])})


@requires("admin.servers.manage")
async def keys_issue(request: Request) -> Response:
    server = await _server(request)
    body = await read_json(request, KeyBody)
    row, secret = await keys.issue(resources_of(request).db, server["id"], server["name"], body.name,
                                   principal_of(request).user_id)
    return JSONResponse({**row, "key": secret}, status_code=201, headers={"Cache-Control": "no-store"})


@requires("admin.servers.manage")
async def keys_revoke(request: Request) -> Response:
    server = await _server(request)
    key_id = request.path_params["key_id"]
    if not 0 < key_id < 2**62:
        raise NotFound("No such key for this server.", code="key_not_found")
    resources = resources_of(request)
    row, bot_id = await keys.revoke(resources.db, server["id"], key_id, principal_of(request).user_id)
    # The key's open websockets close on every replica, like a revoked session's (code 4003).
    assert resources.auth is not None
    await resources.auth.publish_revocation([keys.key_session(key_id)], bot_id)
    return JSONResponse(row)


routes: list[BaseRoute] = [
    api("/api/plugin/link-codes", plugin_link_code, ["POST"], auth="server", tags=["plugin"], ok={201: LinkCode}),
    api("/api/plugin/players/{uuid}", plugin_player, ["GET"], auth="server", tags=["plugin"],
        ok={200: PlayerLookup}),
    api("/api/plugin/players", plugin_players, ["PUT"], auth="server", tags=["plugin"], ok={200: PlayerList}),
    api("/api/plugin/players", plugin_players_gone, ["DELETE"], auth="server", tags=["plugin"]),
    api("/api/minecraft/link", link_status, ["GET"], ok={200: LinkStatus}),
    api("/api/minecraft/link", link, ["POST"], ok={200: LinkStatus}),
    api("/api/minecraft/link", unlink, ["DELETE"], ok={200: LinkStatus}),
    api("/api/minecraft/codes/check", code_check, ["POST"], ok={200: CodePreview}),
    api("/api/minecraft/signup", signup, ["POST"], ok={201: Registered}),
    api("/api/admin/servers/{id:int}/keys", keys_list, ["GET"], ok={200: ServerKeys}),
    api("/api/admin/servers/{id:int}/keys", keys_issue, ["POST"], ok={201: IssuedServerKey}),
    api("/api/admin/servers/{id:int}/keys/{key_id:int}", keys_revoke, ["DELETE"], ok={200: ServerKey}),
]
