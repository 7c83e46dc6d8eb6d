"""Who is calling: resolve Bearer tokens (user JWT or bot token) and session cookies.

Cookie-authenticated state-changing requests must carry the CSRF double-submit header; Bearer
requests cannot be forged cross-site and skip it. A revoked session's access token stops working
at once (the session row is checked), not when the JWT expires.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from server.auth import rbac
from server.auth.tokens import InvalidToken, same
from server.errors import Forbidden, Unauthorized

ACCESS_COOKIE = "vonix_access"
REFRESH_COOKIE = "vonix_refresh"
CSRF_COOKIE = "vonix_csrf"
CSRF_HEADER = "x-csrf-token"
BOT_TOKEN_PREFIX = "vxb_"
SERVER_KEY_PREFIX = "vxs_"  # a game server's plugin API key (server/minecraft/keys.py)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: str
    session_id: str | None = None
    kind: str = "user"  # user | bot
    scopes: frozenset[str] = field(default_factory=frozenset)
    via_cookie: bool = False
    expires_at: int | None = None  # the access token's expiry (unix time); None for bot tokens
    rank: dict[str, Any] | None = None  # {name, colour, badge}: what chat shows beside the name
    game_server_id: int | None = None  # a game server's bot signed in with its key (`vxs_…`)

    def can(self, permission: str) -> bool:
        if self.kind == "bot" and permission.startswith("admin."):
            return False
        return rbac.allowed(self.role, permission)


def bearer_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def resolve(connection: HTTPConnection, *, check_csrf: bool = True) -> Principal | None:
    """The caller, or None when anonymous. Raises Unauthorized for a bad credential."""
    cached = connection.scope.get("vonix.principal")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    from server.auth.service import auth_of

    auth = auth_of(connection)
    token = bearer_token(connection)
    principal: Principal | None = None
    if token is not None:
        try:
            principal = await auth.principal_from_token(token)
        except InvalidToken:
            raise Unauthorized("The access token is invalid or expired.", code="invalid_token") from None
    else:
        cookie = connection.cookies.get(ACCESS_COOKIE)
        if cookie:
            try:
                principal = await auth.principal_from_token(cookie, via_cookie=True)
            except InvalidToken:
                raise Unauthorized("The session has expired.", code="invalid_token") from None
            if check_csrf and isinstance(connection, Request) and connection.method not in SAFE_METHODS:
                verify_csrf(connection)
    connection.scope["vonix.principal"] = principal
    if principal is not None:
        import structlog

        structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    return principal


def verify_csrf(request: Request) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    header = request.headers.get(CSRF_HEADER, "")
    if not cookie or not header or not same(cookie, header):
        raise Forbidden("Missing or wrong CSRF token.", code="csrf_failed")


async def require_user(request: Request) -> Principal:
    principal = await resolve(request)
    if principal is None:
        raise Unauthorized()
    return principal


Endpoint = Callable[[Request], Awaitable[Response]]


def requires(permission: str | None = None) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint: 401 when anonymous, 403 without the permission."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            principal = await require_user(request)
            if permission is not None and not principal.can(permission):
                raise Forbidden()
            return await endpoint(request)

        guarded.__vonix_permission__ = permission or "authenticated"  # type: ignore[attr-defined]
        return guarded

    return decorate


def principal_of(request: Request) -> Principal:
    principal: Any = request.scope.get("vonix.principal")
    if principal is None:
        raise Unauthorized()
    return principal  # type: ignore[no-any-return]
