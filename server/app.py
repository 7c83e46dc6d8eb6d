"""The application factory: settings in, a ready-to-serve ASGI app out; nothing connects here."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from server import ws
from server.errors import EXCEPTION_HANDLERS
from server.lifespan import lifespan
from server.middleware.body_limit import BodyLimitMiddleware
from server.middleware.http_metrics import HttpMetricsMiddleware
from server.middleware.request_context import RequestContextMiddleware
from server.middleware.security_headers import SecurityHeadersMiddleware
from server.observability.logging import configure_logging
from server.resources import Resources
from server.routes import admin, auth, channels, oauth, ops, rooms
from server.routes.pages import page_routes
from server.settings import Settings


def build_routes(settings: Settings) -> list[BaseRoute]:
    return [
        *ops.routes, *auth.routes, *oauth.routes, *admin.routes, *rooms.routes, *channels.routes, *ws.routes,
        *page_routes(settings.static_path),
    ]


def create_app(settings: Settings) -> Starlette:
    configure_logging(settings.log_level, settings.json_logs)
    resources = Resources.build(settings)
    middleware = [
        Middleware(RequestContextMiddleware),
        Middleware(HttpMetricsMiddleware, metrics=resources.metrics),
        Middleware(SecurityHeadersMiddleware, hsts=settings.is_production),
        Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
    ]
    app = Starlette(
        routes=build_routes(settings),
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.vonix = resources
    return app
