"""The PWA: the app shell at `/` and at every client route, its service worker, manifest and assets.

- Client routes (`/rooms/general`, `/dms/alice`, `/notifications`, ... see `SHELL_ROUTES`) answer
  the app shell, so shortcuts, notification links, mail links and reloads land on a real page.
- `/sw.js` is served from `sw/` (beside `static/`) with `Service-Worker-Allowed: /` and
  `no-cache`; its `__BUILD__` marker becomes a hash of every shipped file (and `__PRECACHE__`
  the app shell's URLs), so any change to the client changes the worker's bytes, the browser
  installs the new version and the page offers to reload into it.
- `/manifest.json`, `/offline.html` and `/favicon.ico` live at the root, assets under `/static`.
- Every asset answers `Cache-Control: no-cache` with its validators (ETag, Last-Modified): the names
  carry no content hash, so a browser must revalidate before reusing a copy (a cheap 304), or a
  new service worker's precache (which also asks with `cache: "reload"`) could be filled with the
  previous release's CSS and JS out of the HTTP cache. Offline, the worker's caches serve them.
- `/avatars/<name>.svg`: a generated initial-on-colour avatar (no external image hosts).
- `GET /api/app/config`: what the client needs before sign-in (sign-in providers, push key).
- The shell of the public pages (`/`, `/servers`, `/servers/{id}`: `BOOT_ROUTES`) carries the home
  data inline, `<script type="application/json" id="boot">` (`server/routes/home.py`): a phone's
  first render needs no API round trip. A JSON data block is never executed, so the CSP stays
  `script-src 'self'`; the JSON is escaped for HTML (`<`, `>`, `&`, U+2028/2029), so a server name
  such as `</script><script>…` stays text. If the data cannot be read, the plain shell is served.
"""

from __future__ import annotations

import hashlib
import html
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

from server.jsonio import JSONResponse
from server.observability.logging import get_logger
from server.openapi import api

log = get_logger("vonix.pages")

SHELL_ROUTES = (
    "/", "/signin", "/signup", "/rooms", "/rooms/{name}", "/dms", "/dms/{username}", "/notifications",
    "/settings", "/reset-password", "/verify-email", "/open", "/share",
    "/u/{username}", "/friends", "/settings/profile", "/search", "/moderation",
    "/community", "/forum", "/forum/c/{id}", "/forum/t/{id}", "/feed", "/posts/{id}", "/groups", "/groups/{id}",
    "/events", "/events/{id}", "/leaderboard",
    "/servers", "/servers/{id}", "/admin/servers", "/settings/minecraft",
)
BOOT_ROUTES = ("/", "/servers", "/servers/{id}")
NO_CACHE = {"Cache-Control": "no-cache"}
GET = ["GET", "HEAD"]
APP_CONFIG_SCHEMA = {
    "type": "object", "required": ["oauth", "push", "build"],
    "properties": {
        "oauth": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "push": {"type": "object", "required": ["enabled", "public_key"],
                 "properties": {"enabled": {"type": "boolean"}, "public_key": {"type": ["string", "null"]}}},
        "build": {"type": "string"},
    },
}
AVATAR_COLOURS = ("#10b981", "#0ea5e9", "#8b5cf6", "#f59e0b", "#ef4444", "#14b8a6", "#6366f1", "#ec4899")


class RevalidatedStaticFiles(StaticFiles):
    """StaticFiles whose answers (200 and 304 alike) say `no-cache`: reuse only after revalidating.

    Starlette's StaticFiles sends ETag and Last-Modified but no Cache-Control, which leaves the
    browser free to reuse a stale copy heuristically (for a fraction of the file's age).
    """

    def file_response(self, full_path: PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = NO_CACHE["Cache-Control"]
        return response


class BuildId:
    """A short hash of every file of the client, recomputed only when a file changes."""

    def __init__(self, *directories: Path) -> None:
        self.directories = directories
        self._stamp: tuple[int, float] | None = None
        self._value = ""

    def _files(self) -> list[tuple[str, Path]]:
        return sorted((f"{d.name}/{p.relative_to(d)}", p) for d in self.directories if d.is_dir()
                      for p in d.rglob("*") if p.is_file())

    def value(self) -> str:
        files = self._files()
        stamp = (len(files), max((p.stat().st_mtime for _, p in files), default=0.0))
        if stamp != self._stamp:
            digest = hashlib.sha256()
            for name, path in files:
                digest.update(name.encode() + b"\0" + path.read_bytes())
            self._value, self._stamp = digest.hexdigest()[:16], stamp
        return self._value


def avatar_svg(name: str) -> str:
    colour = AVATAR_COLOURS[int(hashlib.sha256(name.lower().encode()).hexdigest(), 16) % len(AVATAR_COLOURS)]
    initial = html.escape((name[:1] or "?").upper())
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">'
            f'<rect width="64" height="64" rx="14" fill="{colour}"/>'
            '<text x="32" y="43" font-family="system-ui, sans-serif" font-size="30" font-weight="700" '
            f'text-anchor="middle" fill="#0f172a">{initial}</text></svg>')


def page_routes(static_dir: Path, sw_dir: Path | None = None) -> list[BaseRoute]:
    sw_dir = sw_dir or static_dir.parent / "sw"
    index = static_dir / "index.html"
    build = BuildId(static_dir, sw_dir)

    def precache() -> list[str]:
        """The app shell: the page, the offline page, the manifest and every file under /static but
        the API docs viewer (1.9 MB that only /api/docs uses: no install should download it)."""
        at_root = {"index.html", "offline.html", "manifest.json"}
        docs_only = ("vendor/", "api-docs.html", "js/api-docs.js")
        files = sorted(p.relative_to(static_dir).as_posix() for p in static_dir.rglob("*")
                       if p.is_file() and not p.relative_to(static_dir).as_posix().startswith(docs_only))
        return ["/", "/offline.html", "/manifest.json", *(f"/static/{f}" for f in files if f not in at_root)]

    async def shell(request: Request) -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=NO_CACHE)

    page: dict[str, object] = {"stamp": None, "text": ""}

    def index_text() -> str:
        stamp = index.stat().st_mtime_ns
        if page["stamp"] != stamp:
            page["text"], page["stamp"] = index.read_text(encoding="utf-8"), stamp
        return str(page["text"])

    async def shell_with_boot(request: Request) -> Response:
        from server.routes.home import boot_block, home_data

        try:
            block = boot_block(await home_data(request))
        except Exception as exc:  # the page must load anyway: it asks the API itself
            log.warning("boot_data_failed", error=exc.__class__.__name__)
            return await shell(request)
        return HTMLResponse(index_text().replace("</head>", f"  {block}\n</head>", 1), headers=NO_CACHE)

    async def service_worker(request: Request) -> Response:
        source = (sw_dir / "sw.js").read_text(encoding="utf-8")
        source = source.replace("__BUILD__", build.value()).replace("__PRECACHE__", orjson.dumps(precache()).decode())
        return Response(source, media_type="text/javascript; charset=utf-8",
                        headers={**NO_CACHE, "Service-Worker-Allowed": "/"})

    def file(name: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            return FileResponse(static_dir / name, media_type=media_type, headers=NO_CACHE)

        return serve

    async def avatar(request: Request) -> Response:
        name = str(request.path_params["name"])[:32]
        return Response(avatar_svg(name), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=3600"})

    async def app_config(request: Request) -> Response:
        from server.auth.oauth_providers import configured
        from server.resources import resources_of

        resources = resources_of(request)
        push = resources.push
        enabled = push is not None and push.enabled
        return JSONResponse({
            "oauth": {name: configured(resources.settings, name) is not None for name in ("google", "discord")},
            "push": {"enabled": enabled, "public_key": push.public_key if push is not None and enabled else None},
            "build": build.value(),
        }, headers=NO_CACHE)

    # Pages and files of the PWA are not API operations: left out of the OpenAPI document on purpose.
    return [
        *(Route(path, shell_with_boot if path in BOOT_ROUTES else shell, methods=GET, include_in_schema=False)
          for path in SHELL_ROUTES),
        Route("/sw.js", service_worker, methods=GET, name="service_worker", include_in_schema=False),
        Route("/manifest.json", file("manifest.json", "application/manifest+json"), methods=GET,
              include_in_schema=False),
        Route("/offline.html", file("offline.html", "text/html; charset=utf-8"), methods=GET, include_in_schema=False),
        Route("/favicon.ico", file("icons/favicon-32.png", "image/png"), methods=GET, include_in_schema=False),
        Route("/avatars/{name}.svg", avatar, methods=GET, include_in_schema=False),
        api("/api/app/config", app_config, ["GET"], tags=["meta"], ok={200: APP_CONFIG_SCHEMA},
            summary="What the client needs before sign-in: sign-in providers, the push key, the build id"),
        Mount("/static", app=RevalidatedStaticFiles(directory=static_dir, check_dir=False), name="static"),
    ]
