"""Per-client limits on `/api/` requests (429 + `Retry-After` + `RateLimit-*` headers).

Each request counts against the limit of its class (`auth`, `write` or `read`,
server/ratelimit/classes.py), so reads a client makes in normal use never eat into its writes or
sign-ins, and the reverse.

The client is the user when the request carries a validly signed access token (checked with the
signature alone: no database, and a revoked token still names its own user) or a bot token (keyed
by its hash), else the client IP (`client_ip`: forwarded headers only from trusted proxies).
Health, readiness, `/metrics`, the PWA and static files are never limited. A route may carry its
own limit (`RATE_LIMIT_ROUTES`, or `@route_limit("N/S")` on the endpoint), which replaces its
class's limit for that route. Every limited route's response carries `RateLimit-Limit/Remaining/Reset`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import HTTPConnection, Request
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth.principal import ACCESS_COOKIE, BOT_TOKEN_PREFIX, bearer_token
from server.auth.tokens import InvalidToken
from server.errors import RateLimited, error_response
from server.observability.logging import get_logger
from server.ratelimit.classes import limit_class
from server.ratelimit.client_ip import TrustedProxies, client_ip
from server.ratelimit.limiter import RateLimiter
from server.ratelimit.rules import Rule, parse_limit

log = get_logger("vonix.ratelimit")
EXEMPT = frozenset({"/api/health", "/api/ready"})
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def route_limit(limit: str) -> Callable[[Endpoint], Endpoint]:
    """Give an endpoint its own limit (`N/S`, `N/S+B` or `off`); `RATE_LIMIT_ROUTES` still wins."""

    def mark(endpoint: Endpoint) -> Endpoint:
        endpoint.__vonix_rate_limit__ = limit  # type: ignore[attr-defined]
        return endpoint

    return mark


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter, routes: Sequence[BaseRoute],
                 trusted_proxies: Sequence[str], auth: Any) -> None:
        self.app = app
        self.limiter = limiter
        self.auth = auth
        self.trusted = TrustedProxies(trusted_proxies)
        self.overrides = self._overrides(routes)

    def _overrides(self, routes: Sequence[BaseRoute]) -> list[tuple[Route, Rule | None]]:
        found: list[tuple[Route, Rule | None]] = []
        configured = dict(self.limiter.routes)
        for route in routes:
            if not isinstance(route, Route):
                continue
            for method in sorted(route.methods or {"GET"}):
                for key in ((method, route.path), (None, route.path)):
                    if key in configured:
                        found.append((route, configured.pop(key)))
                        break
                else:
                    marked = getattr(route.endpoint, "__vonix_rate_limit__", None)
                    if marked is not None:
                        found.append((route, parse_limit(f"route:{method} {route.path}", marked)))
        for route_method, path in configured:
            log.warning("rate_limit_route_unknown", method=route_method, path=path)
        return found

    def rule_for(self, scope: Scope) -> Rule | None:
        for route, rule in self.overrides:
            if route.matches(scope)[0] is Match.FULL:
                return rule
        return self.limiter.classes.get(limit_class(scope["method"], scope["path"]))

    def identity(self, scope: Scope) -> str:
        connection = HTTPConnection(scope)
        token = bearer_token(connection) or connection.cookies.get(ACCESS_COOKIE)
        if token:
            if token.startswith(BOT_TOKEN_PREFIX):
                return "bot:" + hashlib.sha256(token.encode()).hexdigest()[:20]
            try:
                return f"user:{self.auth.signer.verify_access(token).user_id}"
            except InvalidToken:
                pass
            except Exception:  # a token the JWT library chokes on is just not a user: count the IP
                log.warning("rate_limit_token_unreadable")
        return "ip:" + client_ip(scope, self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limiter.enabled:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        rule = self.rule_for(scope) if path.startswith("/api/") and path not in EXEMPT else None
        if rule is None:
            await self.app(scope, receive, send)
            return
        decision = await self.limiter.hit(rule, self.identity(scope))
        headers = decision.headers()
        if not decision.allowed:
            response = error_response(Request(scope), 429, RateLimited.code, RateLimited.message, headers=headers)
            await response(scope, receive, send)
            return
        extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = message.get("headers", [])
                if not any(name == b"ratelimit-limit" for name, _ in present):  # an action limit answered
                    message["headers"] = [*present, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
