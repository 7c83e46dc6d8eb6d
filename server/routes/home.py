"""`GET /api/home`: what the public home page shows, without signing in (issue 18, "Public home page").

`{"servers": [ServerOut, …], "events": [the next upcoming public events, ≤ 5], "posts": [the latest
public posts, ≤ 5], "status": {"channel": "status:servers", "offset", "epoch"}, "at": iso}`.

- Servers: the status service's snapshot (what `GET /api/servers` answers).
- Events: upcoming events everyone signed in may see (`private` false: a public group's, or no
  group's); a private group's event never appears. Posts: public posts outside groups; a
  friends-only or group post never appears. Both use the groups and feed services' own queries and
  shapes, as seen by a stranger (no RSVP, not liked, no delete).
- `status` is the position of the live channel read *before* the snapshot: a client that
  subscribes with `since` = that position is sent every change after it, so a copy served a few
  seconds late (the cache below, the page's inlined copy) is brought up to date, never left behind.

The same data is inlined into the app shell for `/` and `/servers` (`server/routes/pages.py`,
`boot_block`) so a phone's first render needs no API round trip. It is computed at most once per
`HOME_TTL` seconds per process (one computation at a time; the answer is the same for everyone).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from server.db.types import utcnow
from server.jsonio import JSONResponse
from server.observability.logging import get_logger
from server.openapi import api
from server.openapi.responses import Closed
from server.resources import Resources, resources_of
from server.routes.feed import Post
from server.routes.groups import Event
from server.routes.servers import ServerOut
from server.services.feed import everyone_query
from server.services.groups import events_query

log = get_logger("vonix.home")

STATUS_CHANNEL = "status:servers"
HOME_TTL = 3.0  # seconds: the shell stays cheap under a crowd, and `since` covers the lag
MAX_ITEMS = 5
STRANGER = 0  # no member has this id: the queries' "my groups" and "whom I blocked" are empty
# JSON inside <script type="application/json">: nothing may close the element or open a comment,
# and U+2028/2029 are escaped too (JSON allows them raw, older JavaScript parsers did not).
_HTML_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                            "\u2028": "\\u2028", "\u2029": "\\u2029"})


async def _servers(resources: Resources) -> list[dict[str, Any]]:
    status = resources.mc_status
    snapshot = getattr(status, "snapshot", None)
    return list(await snapshot()) if snapshot is not None else []


async def _events(resources: Resources) -> list[dict[str, Any]]:
    """The next public events, as a stranger sees them (the groups service's own query and shape)."""
    if resources.groups is None:
        return []
    rows = await resources.db.fetch_all(
        "home.events", events_query(STRANGER, "upcoming", utcnow(), None, None, MAX_ITEMS))
    return list(await resources.groups.events.shape(rows[:MAX_ITEMS], None))


async def _posts(resources: Resources) -> list[dict[str, Any]]:
    """The latest public posts outside groups, as a stranger sees them."""
    if resources.feed is None:
        return []
    rows = await resources.db.fetch_all("home.posts", everyone_query(STRANGER, None, MAX_ITEMS))
    return list(await resources.feed.shape_posts(rows[:MAX_ITEMS], None))


async def compute(resources: Resources) -> dict[str, Any]:
    node = resources.node
    assert node is not None  # set by Resources.build
    published = await node.history.position(STATUS_CHANNEL)  # before the snapshot: see the docstring
    return {"servers": await _servers(resources), "events": await _events(resources), "posts": await _posts(resources),
            "status": {"channel": STATUS_CHANNEL, "offset": published.offset, "epoch": published.epoch},
            "at": utcnow().isoformat()}


class HomeCache:
    """The home data of one app, recomputed at most every `ttl` seconds, one computation at a time."""

    def __init__(self, ttl: float = HOME_TTL) -> None:
        self.ttl = ttl
        self._value: dict[str, Any] | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self, resources: Resources) -> dict[str, Any]:
        if self._value is not None and time.monotonic() < self._expires:
            return self._value
        async with self._lock:
            if self._value is None or time.monotonic() >= self._expires:
                self._value = await compute(resources)
                self._expires = time.monotonic() + self.ttl
            return self._value


async def home_data(request: Request) -> dict[str, Any]:
    state = request.app.state
    cache: HomeCache | None = getattr(state, "home_cache", None)
    if cache is None:
        cache = state.home_cache = HomeCache()
    return await cache.get(resources_of(request))


def boot_json(data: dict[str, Any]) -> str:
    """`data` as JSON that is inert inside an HTML `<script type="application/json">` element."""
    return bytes(JSONResponse(data).body).decode().translate(_HTML_SAFE)  # encoded as `GET /api/home` is


def boot_block(data: dict[str, Any]) -> str:
    return f'<script type="application/json" id="boot">{boot_json(data)}</script>'


async def home(request: Request) -> Response:
    return JSONResponse(await home_data(request), headers={"Cache-Control": "no-cache"})


class LivePosition(Closed):
    """Subscribe to `channel` with `since` = this position to be sent every change after the snapshot."""

    channel: str
    offset: int
    epoch: str


class Home(Closed):
    servers: list[ServerOut]
    events: list[Event]
    posts: list[Post]
    status: LivePosition
    at: datetime


routes: list[BaseRoute] = [api("/api/home", home, ["GET"], ok={200: Home})]
