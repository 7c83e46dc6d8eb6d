"""Acceptance 3: a push message delivered to the service worker through the DevTools protocol
(`ServiceWorker.deliverPushMessage`) shows a notification with the server's title and link."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from server.push.sender import PushMessage
from tests.browser.conftest import make_users, new_page, registration_id, worker_ready
from tests.support.appserver import AppServer

SHOWN = """navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((list) => list.map((n) => (
  {title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url, icon: n.icon, badge: n.badge})))"""


async def test_a_push_message_shows_a_notification(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice")
    page = await new_page(browser, web.base_url, username="alice")
    await page.context.grant_permissions(["notifications"], origin=web.base_url)
    await page.goto("/rooms")
    await worker_ready(page)
    cdp = await page.context.new_cdp_session(page)
    registration = await registration_id(page, cdp)
    # Exactly what the server sends (server/push/sender.py), as the push service would hand it over.
    message = PushMessage(title="bob mentioned you in #general", body="@alice the portal is lit",
                          url="/rooms/general#m7", tag="room:general", kind="mention", notification_id=12)
    deadline = time.monotonic() + 15
    redeliver_at = 0.0
    while not (shown := await page.evaluate(SHOWN)):
        assert time.monotonic() < deadline, "no notification was shown"
        if time.monotonic() >= redeliver_at:
            # A push that reaches a worker still starting up can be dropped by Chromium; deliver again
            # (same tag: a duplicate replaces the first, so it cannot make two notifications).
            await cdp.send("ServiceWorker.deliverPushMessage", {
                "origin": web.base_url, "registrationId": registration, "data": message.payload()})
            redeliver_at = time.monotonic() + 4
        await asyncio.sleep(0.1)
    [note] = shown
    assert note["title"] == "bob mentioned you in #general" and note["body"] == "@alice the portal is lit"
    assert note["url"] == "/rooms/general#m7" and note["tag"] == "room:general"
    assert note["icon"].endswith("/static/icons/icon-192.png") and note["badge"].endswith("/static/icons/badge-96.png")

    # A second message in the same room replaces the first (same tag) instead of piling up.
    again = PushMessage(title="bob mentioned you in #general", body="@alice dinner?", url="/rooms/general#m8",
                        tag="room:general", kind="mention")
    await cdp.send("ServiceWorker.deliverPushMessage", {"origin": web.base_url, "registrationId": registration,
                                                          "data": again.payload()})
    deadline = time.monotonic() + 10
    while [n["body"] for n in await page.evaluate(SHOWN)] != ["@alice dinner?"]:
        assert time.monotonic() < deadline, await page.evaluate(SHOWN)
        await asyncio.sleep(0.1)
    assert page.errors == []
