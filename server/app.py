"""The application factory: settings in, a ready-to-serve ASGI app out; nothing connects here."""

from __future__ import annotations

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import EXCEPTION_HANDLERS
from server.lifespan import lifespan
from server.middleware.body_limit import BodyLimitMiddleware
from server.middleware.errors import ErrorCaptureMiddleware
from server.middleware.http_metrics import HttpMetricsMiddleware
from server.middleware.rate_limit import RateLimitMiddleware
from server.middleware.request_context import RequestContextMiddleware
from server.middleware.security_headers import SecurityHeadersMiddleware
from server.middleware.tracing import TracingMiddleware
from server.observability.logging import configure_logging
from server.openapi.serve import openapi_routes
from server.resources import Resources
from server.routes import (
    admin,
    admin_cache,
    auth,
    bridges,
    channels,
    feed,
    forum,
    groups,
    home,
    inbox,
    media,
    messages,
    moderation,
    notifications,
    oauth,
    observability,
    ops,
    passkeys,
    people,
    plugin,
    push,
    rooms,
    search,
    servers,
    xp,
)
from server.routes.pages import page_routes
from server.settings import Settings
from server.ws_entry import VonixApp


def build_routes(settings: Settings) -> list[BaseRoute]:
    return [
        *ops.routes, *auth.routes, *oauth.routes, *admin.routes, *admin_cache.routes, *observability.routes,
        *rooms.routes, *passkeys.routes,
        *channels.routes,
        *notifications.routes, *push.routes, *inbox.routes,
        *people.routes, *media.routes, *messages.routes, *moderation.routes, *search.routes,
        *xp.routes, *forum.routes, *feed.routes, *groups.routes,
        *servers.routes, *plugin.routes, *bridges.routes, *home.routes,
        *openapi_routes(settings.static_path),
        *page_routes(settings.static_path),
    ]


def _bind_route(app: ASGIApp, template: str) -> ASGIApp:
    """Every log line written while serving a route carries its template."""

    async def bound(scope: Scope, receive: Receive, send: Send) -> None:
        structlog.contextvars.bind_contextvars(route=template)
        await app(scope, receive, send)

    return bound


def create_app(settings: Settings) -> Starlette:
    """The app; `/ws` websockets are served ahead of the middleware stack (server/ws_entry.py)."""
    configure_logging(settings.log_level, settings.json_logs)
    resources = Resources.build(settings)
    assert resources.alerter is not None and resources.limiter is not None  # set by build
    middleware = [
        Middleware(RequestContextMiddleware),
        Middleware(SecurityHeadersMiddleware, hsts=settings.is_production),
        Middleware(ErrorCaptureMiddleware, tracker=resources.errors),
        Middleware(HttpMetricsMiddleware, metrics=resources.metrics, window=resources.alerter.window),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, allowances=media.body_allowances(settings)),
    ]
    routes = build_routes(settings)
    if settings.rate_limit_enabled:
        middleware.append(Middleware(RateLimitMiddleware, limiter=resources.limiter, routes=routes,
                                     trusted_proxies=settings.trusted_proxies, auth=resources.auth))
    if settings.allowed_origins:
        # Same-origin needs no CORS; only origins listed in ALLOWED_ORIGINS may call the API cross-site.
        middleware.insert(2, Middleware(
            CORSMiddleware, allow_origins=list(settings.allowed_origins), allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-CSRF-Token", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                            "RateLimit-Reset"],
            max_age=600))
    if resources.tracing is not None and resources.tracing.enabled:
        middleware.insert(1, Middleware(TracingMiddleware, tracer=resources.tracing.tracer))
    app = VonixApp(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    for route in app.routes:
        if isinstance(route, Route | WebSocketRoute):
            route.app = _bind_route(route.app, route.path)
    app.state.vonix = resources
    return app
