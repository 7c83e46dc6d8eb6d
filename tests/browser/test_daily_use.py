"""Issue 14: a day of normal use never meets a rate limit and never breaks.

Member A sits in #general on a phone while member B, on a desktop, writes 300 messages through the
app's own composer; then both open every screen several times. The server runs with its default
rate limits (HTTP and websocket). Nothing may answer 429 or fail, no console error may appear, A
sees every message live, and at the end the notification badge and the rooms' unread counts are
what the server says (a mention seen live in the open room leaves no badge behind).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import (
    PHONE,
    assert_clean,
    connected,
    eventually,
    make_users,
    new_page,
    server_json,
)
from tests.support.appserver import AppServer

DESKTOP = {"width": 1366, "height": 800}
MESSAGES = 300

# Types each message into the composer and submits the form, as a member pressing Enter does: the
# messages take the app's real path (composer -> outbox -> websocket publish, paced by the server).
COMPOSE = """async ([count, prefix]) => {
  const box = document.querySelector("form.composer textarea");
  for (let i = 0; i < count; i++) {
    box.value = i % 50 === 49 ? `${prefix} ${i} @alice look` : `${prefix} ${i}`;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.form.requestSubmit();
    await new Promise((resolve) => setTimeout(resolve, 4));
  }
}"""


async def badge(page: Any) -> int:
    el = page.locator("#notif-count")
    return 0 if await el.is_hidden() else int(await el.inner_text())


async def nav(page: Any, section: str) -> None:
    await page.locator(f'#nav a[data-nav="{section}"]').click()


async def open_screens(page: Any, peer: str) -> None:
    """Rooms, a room, the DMs, a DM, notifications, settings, and back to the room: by the tab bar."""
    await nav(page, "rooms")
    general = page.locator('a.item[data-channel="room:general"]')
    await general.wait_for()
    await general.click()
    await page.get_by_role("heading", name="# general").wait_for()
    await page.locator(".msg .text").first.wait_for()
    await nav(page, "dms")
    dm = page.locator("a.item[data-channel^='dm:']", has_text=peer)
    await dm.wait_for()
    await dm.click()
    await page.get_by_role("heading", name=peer).wait_for()
    await page.locator(".msg .text").first.wait_for()
    await nav(page, "notifications")
    await page.locator("ul[aria-label='Notifications'] a.item").first.wait_for()
    await nav(page, "settings")
    await page.locator("ul[aria-label='Sessions'] li").first.wait_for()
    await nav(page, "rooms")
    await general.wait_for()
    await general.click()
    await page.get_by_role("heading", name="# general").wait_for()
    await page.locator(".msg .text").first.wait_for()
    await connected(page)


async def rooms_counts(page: Any) -> dict[str, int]:
    links = page.locator("ul[aria-label='Rooms'] a.item")
    return {await link.get_attribute("data-channel"): int(await link.get_attribute("data-unread") or 0)
            for link in await links.all()}


async def server_counts(page: Any) -> dict[str, int]:
    rooms = (await server_json(page, "/api/rooms"))["rooms"]
    return {room["channel"]: room["unread"] for room in rooms if room["kind"] != "dm"}


@pytest.mark.timeout(240)
async def test_long_session_with_default_limits(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice", "bob")
    alice = await new_page(browser, web.base_url, username="alice", viewport=PHONE)
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP)
    await alice.goto("/rooms/general")
    await connected(alice)
    await bob.goto("/rooms/general")
    await connected(bob)
    await alice.locator("#people li", has_text="bob").wait_for(state="attached")

    await bob.evaluate(COMPOSE, [MESSAGES, "message"])
    await alice.locator(".msg .text", has_text=f"message {MESSAGES - 1}").wait_for(timeout=90000)
    await bob.locator(".msg.pending").first.wait_for(state="detached", timeout=30000)
    texts = await alice.locator(".msg .text").all_inner_texts()
    expected = [f"message {i} @alice look" if i % 50 == 49 else f"message {i}" for i in range(MESSAGES)]
    assert texts == expected  # every message, live, once, in order
    # Six mentions arrived while alice had the room open: read at once, so no badge stays behind.
    assert await eventually(lambda: _equal(badge(alice), 0))
    assert (await server_json(alice, "/api/notifications/unread"))["unread"] == 0

    # A DM each way, through the DMs screen.
    await nav(bob, "dms")
    await bob.get_by_label("Message someone").fill("alice")
    await bob.get_by_role("button", name="Open").click()
    box = bob.get_by_role("textbox", name="Message alice")
    await box.wait_for()
    await bob.wait_for_load_state("networkidle")  # the new conversation has finished opening
    await box.fill("trade diamonds for the farm?")
    await box.press("Enter")
    await bob.locator(".msg:not(.pending) .text", has_text="trade diamonds").wait_for()
    await nav(alice, "dms")
    await alice.locator("a.item", has_text="trade diamonds").click()
    reply = alice.get_by_role("textbox", name="Message bob")
    await reply.wait_for()
    await alice.wait_for_load_state("networkidle")
    await reply.fill("deal, @bob")
    await reply.press("Enter")
    await alice.locator(".msg:not(.pending) .text", has_text="deal, @bob").wait_for()

    for _ in range(3):
        await open_screens(alice, "bob")
        await open_screens(bob, "alice")

    # Alice leaves for the rooms list; bob writes on: her counts and badge follow live.
    await nav(alice, "rooms")
    await alice.locator('a.item[data-channel="room:general"]').wait_for()
    await bob.evaluate(COMPOSE, [3, "after"])
    await bob.get_by_role("textbox", name="Message # general").fill("@alice one more thing")
    await bob.get_by_role("button", name="Send").click()
    await alice.locator('a.item[data-channel="room:general"][data-unread="4"]').wait_for()
    assert await eventually(lambda: _equal(badge(alice), 1))
    await bob.get_by_role("textbox", name="Message # general").wait_for()
    await nav(bob, "rooms")
    await bob.locator('a.item[data-channel="room:general"]').wait_for()
    for page in (alice, bob):
        same = await eventually(lambda page=page: _same_counts(page))
        assert same, (await rooms_counts(page), await server_counts(page))
        assert await eventually(lambda page=page: _same_badge(page))
    assert (await rooms_counts(alice))["room:general"] == 4 and await badge(alice) == 1
    assert (await rooms_counts(bob))["room:general"] == 0

    assert_clean(alice, bob)  # no 429, no failed request, no console error, no page error


async def _equal(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _same_counts(page: Any) -> bool:
    return await rooms_counts(page) == await server_counts(page)


async def _same_badge(page: Any) -> bool:
    return bool((await server_json(page, "/api/notifications/unread"))["unread"] == await badge(page))
