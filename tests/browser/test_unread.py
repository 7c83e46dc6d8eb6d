"""Issue 14: unread state that is right, live, on every device of a member.

Alice has two devices. Bob mentions her in #general and sends her two DMs. Device 2 watches (one
tab on the rooms list, one on the DMs list) while device 1 reads the DM, then the room: device 2's
notification badge and its DM and room counts drop live to exactly what the server says, and a
reload of every tab shows the same numbers.
"""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import (
    PHONE,
    assert_clean,
    connected,
    eventually,
    make_users,
    new_page,
    server_json,
    watch,
)
from tests.support.accounts import PASSWORD, bearer
from tests.support.appserver import AppServer


async def badge(page: Any) -> int:
    el = page.locator("#notif-count")
    return 0 if await el.is_hidden() else int(await el.inner_text())


async def shown(page: Any, channel: str) -> int:
    link = page.locator(f'a.item[data-channel="{channel}"]')
    if not await link.count():
        return -1
    return int(await link.get_attribute("data-unread") or 0)


async def truth(page: Any) -> dict[str, int]:
    """The server's numbers for this user: badge, #general, and the DM with bob."""
    rooms = {r["channel"]: r["unread"] for r in (await server_json(page, "/api/rooms"))["rooms"]}
    dms = {d["user"]["username"]: (d["channel"], d["unread"]) for d in (await server_json(page, "/api/dms"))["dms"]}
    badge_count = (await server_json(page, "/api/notifications/unread"))["unread"]
    return {"badge": badge_count, "general": rooms["room:general"], "dm": dms["bob"][1] if "bob" in dms else 0}


async def device_view(rooms_tab: Any, dms_tab: Any, dm_channel: str) -> dict[str, int]:
    return {"badge": await badge(rooms_tab), "general": await shown(rooms_tab, "room:general"),
            "dm": await shown(dms_tab, dm_channel)}


async def converge(rooms_tab: Any, dms_tab: Any, dm_channel: str, expected: dict[str, int]) -> None:
    """Device 2's numbers reach `expected` without a reload, and the server agrees."""
    async def check() -> bool:
        return await device_view(rooms_tab, dms_tab, dm_channel) == expected
    assert await eventually(check, timeout=10), (await device_view(rooms_tab, dms_tab, dm_channel), expected)
    assert await truth(rooms_tab) == expected
    assert await badge(dms_tab) == expected["badge"]


async def test_unread_counts_follow_reads_on_another_device(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice", "bob")
    async with web.client() as client:
        signed = await client.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
        token = signed.json()["access_token"]
        await client.post("/api/rooms/general/join", headers=bearer(token))

    device1 = await new_page(browser, web.base_url, username="alice", viewport=PHONE)
    await device1.goto("/rooms/general")  # alice joins #general
    await connected(device1)
    await device1.locator('#nav a[data-nav="rooms"]').click()
    await device1.locator('a.item[data-channel="room:general"]').wait_for()

    rooms_tab = await new_page(browser, web.base_url, username="alice")
    dms_tab = watch(await rooms_tab.context.new_page())  # device 2's second tab: same cookies, same session
    await rooms_tab.goto("/rooms")
    await dms_tab.goto("/dms")
    await connected(rooms_tab)
    await connected(dms_tab)
    await rooms_tab.locator('a.item[data-channel="room:general"][data-unread="0"]').wait_for()
    await dms_tab.get_by_text("No conversations yet.").wait_for()

    async with web.client() as client:
        headers = bearer(token)
        for text in ("evening all", "@alice can you check the farm?"):
            response = await client.post("/api/channels/room:general/messages", json={"data": {"text": text}},
                                         headers=headers)
            assert response.status_code == 201, response.text
        dm = (await client.post("/api/dms", json={"username": "alice"}, headers=headers)).json()["channel"]
        for text in ("psst", "the diamonds are in the chest"):
            response = await client.post(f"/api/channels/{dm}/messages", json={"data": {"text": text}},
                                         headers=headers)
            assert response.status_code == 201, response.text

    # Live, with no reload: two room messages, a mention and two DMs (a conversation that is new).
    await converge(rooms_tab, dms_tab, dm, {"badge": 3, "general": 2, "dm": 2})
    await dms_tab.locator(f'a.item[data-channel="{dm}"]', has_text="the diamonds are in the chest").wait_for()

    # Device 1 reads the DM: device 2's DM count and the two DM notifications go, live.
    await device1.locator('#nav a[data-nav="dms"]').click()
    await device1.locator(f'a.item[data-channel="{dm}"]').click()
    await device1.locator(".msg .text", has_text="the diamonds are in the chest").wait_for()
    await converge(rooms_tab, dms_tab, dm, {"badge": 1, "general": 2, "dm": 0})

    # Device 1 reads the room: the mention is read with it.
    await device1.locator('#nav a[data-nav="rooms"]').click()
    await device1.locator('a.item[data-channel="room:general"]').click()
    await device1.locator(".msg .text", has_text="can you check the farm").wait_for()
    await converge(rooms_tab, dms_tab, dm, {"badge": 0, "general": 0, "dm": 0})

    # A message while device 1 looks elsewhere counts again everywhere; a reload keeps every number.
    await device1.locator('#nav a[data-nav="settings"]').click()
    await device1.get_by_text("Signed in as alice").wait_for()
    async with web.client() as client:
        response = await client.post("/api/channels/room:general/messages", json={"data": {"text": "@alice ping"}},
                                     headers=bearer(token))
        assert response.status_code == 201
    await converge(rooms_tab, dms_tab, dm, {"badge": 1, "general": 1, "dm": 0})
    assert await eventually(lambda: _badge_is(device1, 1))
    for tab in (rooms_tab, dms_tab, device1):
        await tab.reload()
        await connected(tab)
    await rooms_tab.locator('a.item[data-channel="room:general"]').wait_for()
    await dms_tab.locator(f'a.item[data-channel="{dm}"]').wait_for()
    await converge(rooms_tab, dms_tab, dm, {"badge": 1, "general": 1, "dm": 0})
    assert await eventually(lambda: _badge_is(device1, 1))
    assert_clean(device1, rooms_tab, dms_tab)


async def _badge_is(page: Any, expected: int) -> bool:
    return await badge(page) == expected
