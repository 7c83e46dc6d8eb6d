"""The OpenAPI document is valid OpenAPI 3.1, describes every route, and is read from the code.

Built from the real app factory (no server needed: the factory connects nothing). The generator
itself is checked against routes made up here, so a route added without `api(...)` is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from server.app import build_routes, create_app
from server.auth.principal import requires
from server.errors import Conflict
from server.jsonio import JSONResponse, query_int, read_json
from server.openapi import ApiRoute, api
from server.openapi.document import build_document, undescribed
from tests.conftest import make_settings

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("openapi") / "unused.db"
    return create_app(make_settings(DATABASE_URL=f"sqlite:///{path}"))


@pytest.fixture(scope="module")
def document(app: Any) -> dict[str, Any]:
    return build_document(app.routes)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def error_codes(operation: dict[str, Any], status: int) -> set[str]:
    """The codes listed for a status: the enum, or (a status with run-time codes) the description's."""
    response = operation["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    if "properties" in schema:
        return set(schema["properties"]["error"]["properties"]["code"]["enum"])
    return set(re.findall(r"`([a-z_]+)`", response["description"]))


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_route_is_described_or_left_out_on_purpose(app: Any, document: dict[str, Any]) -> None:
    assert undescribed(app.routes) == []
    described = {(m, p) for m, p, _ in operations(document)}
    left_out = []
    for route in app.routes:
        if isinstance(route, ApiRoute):
            for method in route.methods or ():
                if method != "HEAD":
                    template = route.path.replace(":int", "")
                    assert (method, template) in described, f"{method} {route.path} is missing"
        elif isinstance(route, Route):
            left_out.append(route.path)
        else:
            assert isinstance(route, WebSocketRoute | Mount), route
    # Only the PWA's pages and files are left out: no `/api/` route may hide from the contract.
    assert [path for path in left_out if path.startswith("/api/")] == ["/api/docs"]
    assert "/" in left_out and "/sw.js" in left_out
    assert len(described) >= 170


def test_a_route_without_metadata_fails_the_build(app: Any) -> None:
    async def handler(request: Request) -> Response:
        return Response()

    with pytest.raises(ValueError, match="/api/new-thing"):
        build_document([*app.routes, Route("/api/new-thing", handler, methods=["GET"])])


def test_auth_requirements_follow_the_guards(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        auth = operation["x-vonix-auth"]
        if path.startswith("/api/admin/"):
            assert auth == "admin", (method, path)
            assert "forbidden" in error_codes(operation, 403), (method, path)
        if auth in ("member", "admin"):
            assert operation["security"] == [{"bearerAuth": []}, {"cookieAuth": []}], (method, path)
            assert {"unauthorized", "invalid_token"} <= error_codes(operation, 401), (method, path)
            if method != "GET":
                assert "csrf_failed" in error_codes(operation, 403), (method, path)
        if auth == "none":
            assert operation["security"] == [], (method, path)
    ops = {(m, p): o for m, p, o in operations(document)}
    assert ops[("POST", "/api/auth/register")]["x-vonix-auth"] == "none"
    assert ops[("GET", "/api/auth/me")]["x-vonix-auth"] == "member"
    assert ops[("POST", "/api/plugin/link-codes")]["security"] == [{"serverKey": []}]
    assert set(document["components"]["securitySchemes"]) == {"bearerAuth", "cookieAuth", "serverKey"}


def test_request_bodies_are_the_handlers_models(document: dict[str, Any]) -> None:
    ops = {(m, p): o for m, p, o in operations(document)}
    register = ops[("POST", "/api/auth/register")]
    ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(schema["required"]) == {"username", "email", "password"}
    assert schema["properties"]["username"]["pattern"] == r"^[A-Za-z0-9_]{3,32}$"
    # Every body route answers the body errors of `read_json`.
    for method, path, operation in operations(document):
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert {"invalid_json", "empty_body"} <= error_codes(operation, 400), (method, path)
            assert error_codes(operation, 415) == {"unsupported_media_type"}, (method, path)
            assert "validation_failed" in error_codes(operation, 422), (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400 and not (path == "/api/ready" and status == "503"):
                content = response["content"]["application/json"]
                assert "Error" in str(content["schema"]), (method, path, status)
    # Query parameters read with query_int keep their bounds.
    history = ops[("GET", "/api/channels/{channel}/messages")]
    limit = next(p for p in history["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    assert document["paths"]["/api/posts/{id}"]["parameters"][0]["schema"]["type"] == "integer"


def test_errors_raised_by_handlers_are_listed(document: dict[str, Any]) -> None:
    ops = {(m, p): o for m, p, o in operations(document)}
    assert "session_not_found" in error_codes(ops[("DELETE", "/api/auth/sessions/{session_id}")], 404)
    assert "invalid_mfa_code" in error_codes(ops[("POST", "/api/auth/login/mfa")], 401)
    assert "room_exists" in error_codes(ops[("POST", "/api/rooms")], 409)
    for _, _, operation in operations(document):
        for status in operation["responses"]:
            assert int(status) < 500 or int(status) == 503, operation["operationId"]


class _Body(BaseModel):
    name: str


@requires("admin.things.manage")
async def _made_up(request: Request) -> Response:
    """Create a thing."""
    body = await read_json(request, _Body)
    query_int(request, "limit", 1, 10, default=5)
    if body.name == "taken":
        raise Conflict("Taken.", code="thing_taken")
    return JSONResponse({}, status_code=201)


def test_the_contract_is_read_from_the_handler() -> None:
    doc = build_document([api("/api/things/{id:int}", _made_up, ["POST"], errors=[(410, "gone")])])
    operation = doc["paths"]["/api/things/{id}"]["post"]
    assert operation["summary"] == "Create a thing"
    assert operation["x-vonix-auth"] == "admin" and operation["x-vonix-permission"] == "admin.things.manage"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/_Body"}
    assert operation["parameters"][0]["name"] == "limit"
    assert set(operation["responses"]) == {"201", "400", "401", "403", "404", "409", "410", "413", "415", "422", "429"}
    assert error_codes(operation, 409) == {"thing_taken"}
    assert error_codes(operation, 403) == {"forbidden", "csrf_failed"}
    validate(doc)


def test_every_served_route_list_is_the_apps(app: Any) -> None:
    routes: list[BaseRoute] = build_routes(make_settings())
    assert len(routes) == len(app.routes)


# Operations whose success answers are described field by field (a response model beside the route),
# not "any object": schemathesis checks real answers against these. An operation may join the list;
# one dropping out of it (its `ok=` removed, or turned back into a bare object) fails here.
DESCRIBED_RESPONSES = {
    "auth.register", "auth.login", "auth.login_mfa", "auth.refresh", "auth.me", "auth.list_sessions",
    "auth.revoke_other_sessions", "auth.mfa_enroll", "auth.mfa_confirm", "auth.password_forgot",
    "auth.resend_verification",
    "rooms.list_rooms", "rooms.create_room", "rooms.show_room", "rooms.update_room", "rooms.room_members",
    "rooms.join_room", "rooms.invite", "rooms.open_dm",
    "channels.publish", "channels.history", "channels.presence",
    "people.show_profile", "people.edit_profile", "people.list_friends", "people.request_friend",
    "people.accept_friend", "people.block",
    "notifications.list_notifications", "notifications.unread", "notifications.mark_read",
    "notifications.mark_one_read",
    "feed.list_posts", "feed.create_post", "feed.show_post", "feed.upload_image", "feed.like_post.post",
    "feed.like_post.delete", "feed.list_comments", "feed.create_comment", "feed.like_comment.post",
    "feed.like_comment.delete",
    "forum.list_categories", "forum.create_category", "forum.update_category", "forum.list_threads",
    "forum.create_thread", "forum.show_thread", "forum.edit_thread", "forum.thread_edits", "forum.pin_thread",
    "forum.unpin_thread", "forum.lock_thread", "forum.unlock_thread", "forum.vote_thread",
    "forum.watch_thread.post", "forum.watch_thread.delete", "forum.create_reply", "forum.edit_reply",
    "forum.vote_reply", "forum.reply_edits",
    "groups.list_groups", "groups.create_group", "groups.show_group", "groups.edit_group", "groups.join_group",
    "groups.group_members", "groups.group_requests", "groups.approve_request", "groups.set_member_role",
    "groups.list_events", "groups.create_event", "groups.show_event", "groups.edit_event", "groups.rsvp",
    "servers.list_servers", "servers.show_server", "servers.server_history", "servers.admin_list",
    "servers.admin_create", "servers.admin_order", "servers.admin_update",
    "search.search", "home.home", "inbox.list_dms",
    "messages.edit_message", "messages.delete_message", "messages.add_reaction", "messages.remove_reaction",
    "messages.list_reactions", "messages.list_edits", "media.upload_avatar",
    "push.key", "push.list_subscriptions", "push.subscribe",
    "xp.leaderboard", "xp.list_ranks", "xp.create_rank", "xp.assign_rank",
    "ops.ready", "pages.app_config", "serve.openapi_json",
    "ops.health", "oauth.accounts", "admin.audit_log", "admin.create_bot_route", "admin.database",
    "admin_cache.cache_report", "admin_cache.cache_invalidate", "admin_cache.ratelimit_report",
    "observability.report_client_error", "observability.list_errors", "observability.stats",
    "passkeys.list_passkeys", "passkeys.register_options", "passkeys.register", "passkeys.rename",
    "passkeys.login_options", "passkeys.login", "passkeys.mfa_options", "passkeys.mfa_login",
    "push.test_push", "inbox.mark_channel_read",
    "moderation.list_sanctions", "moderation.impose", "moderation.slow_mode", "moderation.set_role",
    "moderation.create_report", "moderation.report_queue", "moderation.resolve_report",
    "plugin.plugin_link_code", "plugin.plugin_player", "plugin.plugin_players", "plugin.link_status",
    "plugin.link", "plugin.unlink", "plugin.code_check", "plugin.signup", "plugin.keys_list",
    "plugin.keys_issue", "plugin.keys_revoke", "bridges.put_discord_health",
}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _described(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """A schema that says more than "an object": properties, or alternatives that each have them."""
    schema = _resolve(document, schema)
    if "anyOf" in schema or "oneOf" in schema:
        return all(_described(document, option) for option in schema.get("anyOf", schema.get("oneOf", [])))
    return bool(schema.get("properties")) or schema.get("type") not in (None, "object")


def test_the_main_operations_describe_their_answers(document: dict[str, Any]) -> None:
    described = set()
    for _, _, operation in operations(document):
        successes = [response["content"]["application/json"]["schema"]
                     for status, response in operation["responses"].items()
                     if status.startswith("2") and "application/json" in response.get("content", {})]
        if successes and all(_described(document, schema) for schema in successes):
            described.add(operation["operationId"])
    assert DESCRIBED_RESPONSES <= described, sorted(DESCRIBED_RESPONSES - described)
    assert len(described) >= len(DESCRIBED_RESPONSES)


def test_response_models_are_closed_and_exemplified(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    ops = {(m, p): o for m, p, o in operations(document)}

    def answer(method: str, path: str, status: str = "200") -> dict[str, Any]:
        schema = ops[(method, path)]["responses"][status]["content"]["application/json"]["schema"]
        return _resolve(document, schema)

    me = answer("GET", "/api/auth/me")
    # The member's own account: `users.private`, nothing more (a secret column leaking would fail).
    assert me["additionalProperties"] is False
    assert {"id", "username", "email", "email_verified", "mfa_enabled"} <= set(me["required"])
    assert "password_hash" not in me["properties"] and "totp_secret" not in me["properties"]
    assert me["examples"][0]["username"] == "alex"
    login = answer("POST", "/api/auth/login")
    assert {option["$ref"].rsplit("/", 1)[-1] for option in login["anyOf"]} == {
        "TokenSession", "CookieSession", "MfaRequired"}
    assert set(schemas["TokenSession"]["required"]) >= {"access_token", "refresh_token", "token_type", "user"}
    assert answer("POST", "/api/auth/register", "201")["properties"]["user"]["$ref"].endswith("/PrivateUser")
    history = answer("GET", "/api/channels/{channel}/messages")
    assert history["additionalProperties"] is False and history["examples"]
    frame = _resolve(document, history["properties"]["messages"]["items"])
    assert "from" in frame["required"] and "additionalProperties" not in frame  # open: amendments add fields
    servers = answer("GET", "/api/servers")
    server = _resolve(document, servers["properties"]["servers"]["items"])
    assert set(_resolve(document, server["properties"]["uptime"])["required"]) == {"24h", "7d"}
    # Request bodies of the main writes carry examples too.
    register = ops[("POST", "/api/auth/register")]["requestBody"]["content"]["application/json"]
    assert register["examples"]["register"]["value"]["username"] == "alex"


class _Nested(BaseModel):
    x: int


class _Outer(BaseModel):
    nested: _Nested


def _other_outer() -> type[BaseModel]:
    """A response model nesting a different model that is also named `_Nested`."""

    class _Nested(BaseModel):
        y: str

    class _OtherOuter(BaseModel):
        nested: _Nested

    return _OtherOuter


async def _outer(request: Request) -> Response:
    return JSONResponse({"nested": {"x": 1}})


async def _other(request: Request) -> Response:
    return JSONResponse({"nested": {"y": "a"}})


def test_two_nested_models_with_one_name_fail_the_build() -> None:
    doc = build_document([api("/api/a", _outer, ["GET"], ok={200: _Outer})])
    assert doc["paths"]["/api/a"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/_OuterOut"}
    with pytest.raises(ValueError, match="_Nested"):
        build_document([api("/api/a", _outer, ["GET"], ok={200: _Outer}),
                        api("/api/b", _other, ["GET"], ok={200: _other_outer()})])
