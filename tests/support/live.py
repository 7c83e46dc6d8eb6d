"""Helpers for tests of live features: a signed-in member's token, the next event on their own
channel, and two replicas sharing PostgreSQL and Redis (or one embedded server used twice)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.conftest import make_settings
from tests.support.appserver import AppServer
from tests.support.wsclient import WsClient


def token_of(who: dict[str, Any]) -> str:
    """The access token of a member made by `tests.support.community.people`."""
    return str(who["headers"]["Authorization"].split()[1])


async def personal(ws: WsClient, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The `data` of the next push of `kind` on the member's own channel (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        push = await ws.push("message", timeout=max(0.1, deadline - time.monotonic()))
        if push["channel"].startswith("user:") and push["data"].get("type") == kind:
            return dict(push["data"])


async def listen(server: AppServer, who: dict[str, Any]) -> WsClient:
    """A connection of `who` subscribed to their own channel."""
    ws = await WsClient.connect(server.base_url, token_of(who))
    assert (await ws.request("subscribe", channel=f"user:{who['id']}"))["ok"]
    return ws


@contextlib.asynccontextmanager
async def replicas(backend: dict[str, Any], **overrides: Any) -> AsyncIterator[tuple[AppServer, AppServer]]:
    """Two replicas in scaled mode; in embedded mode the one server twice (nothing to share)."""
    settings = make_settings(**backend, **overrides)
    if "REDIS_URL" not in backend:
        async with AppServer(settings) as only:
            yield only, only
        return
    async with AppServer(settings) as a, AppServer(settings) as b:
        yield a, b
