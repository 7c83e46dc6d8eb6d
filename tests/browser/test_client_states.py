"""Issue 14: the client states a member meets in daily use.

A 429 is waited out (the top bar says "Busy", never "Live"); the composer counts near the limit
and never cuts a paste short; a refused message says why; an unknown room says so; a private
room's panel invites, lists, edits the topic and leaves; the DMs list shows the last message; the
sessions list names browser, system and last-seen time; presence is "unknown" offline; a
signed-out start asks nothing that fails; a wrong 2FA code says what went wrong.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyotp

from tests.browser.conftest import (
    PHONE,
    assert_clean,
    connected,
    make_users,
    new_page,
    problems,
    server_json,
    sign_in_with_form,
    web_settings,
)
from tests.conftest import fresh_sqlite_url
from tests.support.accounts import PASSWORD, bearer
from tests.support.appserver import AppServer

ANDROID_CHROME = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/120.0.0.0 Mobile Safari/537.36")
WINDOWS_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"


async def token_of(server: AppServer, name: str) -> str:
    async with server.client() as client:
        response = await client.post("/api/auth/login", json={"login": name, "password": PASSWORD})
        return str(response.json()["access_token"])


async def test_rate_limited_api_is_waited_out(browser: Any, sqlite_template: Path, tmp_path: Path) -> None:
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path), RATE_LIMIT_READ="3/2")
    async with AppServer(settings) as server:
        await make_users(server, "alice")
        page = await new_page(browser, server.base_url, username="alice")
        seen: list[str] = []

        async def watch_conn() -> None:
            while True:
                try:
                    state = await page.locator("#conn").get_attribute("data-state", timeout=1000)
                    text = await page.locator("#conn .conn-text").inner_text(timeout=1000)
                    if state == "limited":
                        seen.append(text)
                        assert text != "Live"
                except asyncio.CancelledError:
                    raise
                except Exception:  # the page may be between documents
                    continue
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_conn())
        try:
            await page.goto("/rooms")  # boot: config, me, unread, rooms, DMs, the list: more than 3 reads
            await page.locator('#conn[data-state="limited"]').wait_for(timeout=10000)
            assert (await page.locator("#conn .conn-text").inner_text()).startswith("Busy — retrying")
            await page.locator('a.item[data-channel="room:general"]').wait_for(timeout=20000)
            await page.locator('#conn[data-state="connected"]').wait_for(timeout=20000)
        finally:
            watcher.cancel()
        assert await page.locator("#conn .conn-text").inner_text() == "Live"
        assert any(text.startswith("Busy — retrying in") for text in seen), seen
        assert any(status.startswith("429 GET ") for status in page.bad_responses), page.bad_responses
        await page.locator("#notif-count").wait_for(state="attached")
        assert page.errors == []


async def test_composer_counts_and_never_truncates(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice")
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE)
    await page.goto("/rooms/general")
    await connected(page)
    box = page.get_by_role("textbox", name="Message # general")
    counter = page.locator("#composer-count")
    send = page.get_by_role("button", name="Send")

    await box.fill("x" * 3499)
    assert await counter.is_hidden()
    await box.fill("y" * 3812)
    assert await counter.inner_text() == "3,812 / 4,000"
    assert await send.is_enabled()

    pasted = "z" * 4210
    await box.fill(pasted)
    assert await box.input_value() == pasted  # nothing cut off
    assert await counter.inner_text() == "4,210 / 4,000 — too long"
    assert await send.is_disabled()
    await box.press("Enter")
    await asyncio.sleep(0.3)
    assert await page.locator(".msg").count() == 0
    assert await box.input_value() == pasted

    exact = "w" * 3998
    await box.fill(f"  {exact}ww \n")  # trimmed: 4,000 characters
    assert await counter.inner_text() == "4,000 / 4,000"
    await send.click()
    await page.locator(".msg:not(.pending) .text", has_text="w" * 50).wait_for()
    history = await server_json(page, "/api/channels/room:general/messages?limit=5")
    assert [len(m["data"]["text"]) for m in history["messages"]] == [4000]
    assert await counter.is_hidden()

    # The server refuses what the composer cannot tell (a control character): the message says why.
    await box.fill("ring the \u0007 bell")
    await box.press("Enter")
    failed = page.locator(".msg.pending", has_text="ring the")
    await failed.locator(".state.failed", has_text="Not sent: control characters are not allowed").wait_for()
    assert "data.text" not in await failed.locator(".state").inner_text()
    assert page.errors == []


async def test_unknown_room_says_so(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice", "bob")
    async with web.client() as client:
        await client.post("/api/rooms", json={"name": "secret-base", "private": True},
                          headers=bearer(await token_of(web, "bob")))
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE)
    for name in ("doesnotexist", "secret-base"):
        await page.goto(f"/rooms/{name}")
        await page.get_by_role("heading", name="No such room").wait_for()
        assert await page.locator("textarea").count() == 0  # no composer
        assert await page.locator("form.composer").count() == 0
    await page.get_by_role("link", name="Back to rooms").click()
    await page.wait_for_url("**/rooms")
    await page.locator('a.item[data-channel="room:general"]').wait_for()
    assert page.errors == []


async def test_private_room_panel(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice", "bob")
    owner = await new_page(browser, web.base_url, username="alice")
    await owner.goto("/rooms")
    await owner.get_by_text("Create a room").click()
    await owner.get_by_label("Room name").fill("builders")
    await owner.get_by_label("Private (members only)").check()
    await owner.get_by_role("button", name="Create room").click()
    await owner.get_by_role("heading", name="# builders").wait_for()
    await connected(owner)

    await owner.get_by_role("button", name="Room info: # builders").click()
    panel = owner.get_by_role("dialog")
    await panel.get_by_text("Private room: members only.").wait_for()
    members = panel.get_by_role("list", name="Members")
    await members.locator("li", has_text="alice").wait_for()
    assert "owner" in await members.locator("li", has_text="alice").inner_text()
    await panel.get_by_label("Invite by username").fill("bob")
    await panel.get_by_role("button", name="Invite").click()
    await members.locator("li", has_text="bob").wait_for()
    await panel.get_by_label("Topic").fill("Redstone contraptions only")
    await panel.get_by_role("button", name="Save topic").click()
    await panel.get_by_text("Redstone contraptions only").wait_for()
    await panel.get_by_role("button", name="Close").click()
    await panel.wait_for(state="detached")
    room = await server_json(owner, "/api/rooms/builders")
    assert room["topic"] == "Redstone contraptions only" and room["role"] == "owner"

    member = await new_page(browser, web.base_url, username="bob", viewport=PHONE)
    await member.goto("/rooms/builders")
    await member.get_by_role("heading", name="# builders").wait_for()
    await member.get_by_role("button", name="Room info: # builders").click()
    panel = member.get_by_role("dialog")
    await panel.get_by_text("Redstone contraptions only").wait_for()
    await panel.get_by_role("list", name="Members").locator("li", has_text="alice").wait_for()
    assert await panel.get_by_label("Invite by username").count() == 0  # members do not invite
    assert await panel.get_by_role("button", name="Save topic").count() == 0
    await panel.get_by_role("button", name="Leave room").click()
    await panel.get_by_role("button", name="Leave # builders for good").click()
    await member.wait_for_url("**/rooms")
    await member.locator('a.item[data-channel="room:general"]').wait_for()
    assert await member.locator('a.item[data-channel="room:builders"]').count() == 0
    response = await member.context.request.get("/api/rooms/builders")
    assert response.status == 404
    assert owner.errors == [] and member.errors == []


async def test_dms_list_shows_the_last_message(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice", "bob")
    token = await token_of(web, "bob")
    async with web.client() as client:
        dm = (await client.post("/api/dms", json={"username": "alice"}, headers=bearer(token))).json()["channel"]
        await client.post(f"/api/channels/{dm}/messages", json={"data": {"text": "first"}}, headers=bearer(token))
        await client.post(f"/api/channels/{dm}/messages",
                          json={"data": {"text": "want to trade diamonds for the elytra tonight?"}},
                          headers=bearer(token))
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE)
    await page.goto("/dms")
    await connected(page)
    row = page.locator(f'a.item[data-channel="{dm}"]')
    await row.locator(".sub", has_text="want to trade diamonds for the elytra tonight?").wait_for()
    await row.locator("time").wait_for()
    assert "messages" not in await row.inner_text()
    assert await row.get_attribute("data-unread") == "2"

    async with web.client() as client:
        await client.post(f"/api/channels/{dm}/messages", json={"data": {"text": "hello?"}}, headers=bearer(token))
    await row.locator(".sub", has_text="hello?").wait_for()  # live
    await page.locator(f'a.item[data-channel="{dm}"][data-unread="3"]').wait_for()
    await row.click()
    reply = page.get_by_role("textbox", name="Message bob")
    await reply.fill("yes!")
    await reply.press("Enter")
    await page.locator(".msg:not(.pending) .text", has_text="yes!").wait_for()
    await page.locator('#nav a[data-nav="dms"]').click()
    await row.locator(".sub", has_text="You: yes!").wait_for()
    assert await row.get_attribute("data-unread") == "0"
    assert_clean(page)


async def test_sessions_name_browser_system_and_last_seen(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice")
    await new_page(browser, web.base_url, username="alice", user_agent=ANDROID_CHROME)
    page = await new_page(browser, web.base_url, username="alice", user_agent=WINDOWS_FIREFOX)
    await page.goto("/settings")
    sessions = page.get_by_role("list", name="Sessions")
    phone = sessions.locator("li", has_text="Chrome on Android")
    await phone.wait_for()
    assert "· last seen just now" in await phone.inner_text()
    this = sessions.locator('li[data-current="true"]')
    assert "Firefox on Windows · active now" in await this.inner_text()
    assert "this device" in await this.inner_text()
    assert await this.get_by_role("button", name="Sign out").count() == 0
    await phone.get_by_role("button", name="Sign out").click()
    await phone.wait_for(state="detached")
    assert page.errors == []


async def test_presence_is_unknown_offline(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice")
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE)  # the people toggle
    await page.goto("/rooms/general")
    await connected(page)
    toggle = page.locator(".people-toggle")
    await page.get_by_role("button", name="Online: 1").wait_for()
    await page.context.set_offline(True)
    await page.locator('#conn[data-state="offline"]').wait_for()
    await page.get_by_role("button", name="Online: \u2013").wait_for()  # an en dash: unknown
    assert await toggle.get_attribute("title") == "presence unknown while offline"
    await toggle.click()
    await page.locator("#people", has_text="Presence unknown while offline").wait_for()
    await page.context.set_offline(False)
    await connected(page)
    await page.get_by_role("button", name="Online: 1").wait_for()
    assert await toggle.get_attribute("title") is None
    assert page.errors == []


async def test_signed_out_start_asks_nothing_that_fails(browser: Any, web: AppServer) -> None:
    page = await new_page(browser, web.base_url, viewport=PHONE)
    await page.goto("/rooms")
    await page.wait_for_url("**/signin?next=*")
    await page.get_by_role("heading", name="Sign in to Vonix").wait_for()
    await page.goto("/signin")
    await page.get_by_role("heading", name="Sign in to Vonix").wait_for()
    await page.wait_for_load_state("networkidle")
    asked = [r for r in page.requests if "/api/auth/me" in r or "/api/auth/refresh" in r
             or "/api/notifications" in r]
    assert asked == []
    assert_clean(page)
    assert await page.locator("#conn").get_attribute("data-state") == "idle"


async def test_two_factor_errors_say_what_went_wrong(browser: Any, web: AppServer) -> None:
    await make_users(web, "alice")
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE)
    await page.goto("/settings")
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = await page.locator("form code").inner_text()
    totp = pyotp.TOTP(secret)
    wrong = f"{(int(totp.now()) + 500000) % 1000000:06d}"
    await page.get_by_label("Code from the app").fill(wrong)
    await page.get_by_role("button", name="Turn on", exact=True).click()
    alert = page.locator("form [role=alert]")
    await alert.get_by_text("That code is not right.").wait_for()
    assert "Some fields are invalid" not in await alert.inner_text()
    assert len(await alert.inner_text()) > len("That code is not right.")  # and why
    code = totp.now()
    await page.get_by_label("Code from the app").fill(code)
    await page.get_by_role("button", name="Turn on", exact=True).click()
    await page.get_by_text("Two-factor authentication is on.").wait_for()

    # Signing in again with the code that just turned 2FA on: it was used; say to wait for the next.
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await page.wait_for_url("**/signin")
    await sign_in_with_form(page, "alice")
    await page.get_by_role("heading", name="Two-factor authentication").wait_for()
    await page.get_by_label("Code").fill(code)
    await page.get_by_role("button", name="Verify").click()
    await page.get_by_role("alert").get_by_text("This code was just used; wait for the next one").wait_for()
    assert page.errors == []
    assert not problems(page)["failed"]


async def test_a_message_between_the_page_and_the_followers_start_is_not_lost(browser: Any, web: AppServer) -> None:
    """The room is already followed (the unread counts) from a moment after its history page was
    read: a message stored in between is in neither, and a later one arrives live. The view must see
    the channel moved past its page and read it again, not trust the newest message it shows."""
    await make_users(web, "alice", "bob")
    alice, bob = await token_of(web, "alice"), await token_of(web, "bob")
    async with web.client() as client:
        assert (await client.post("/api/rooms/general/join", headers=bearer(alice))).status_code < 300
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE, service_workers="block")
    socket_may_open = asyncio.Event()

    async def hold_the_socket(ws: Any) -> None:  # the unread follower starts after the first message
        await socket_may_open.wait()
        ws.connect_to_server()

    async def say(text: str) -> None:
        async with web.client() as client:
            response = await client.post("/api/channels/room:general/messages", json={"data": {"text": text}},
                                         headers=bearer(bob))
            assert response.status_code == 201, response.text

    raced: list[str] = []

    async def page_then_messages(route: Any) -> None:
        raced.append(route.request.url)
        if len(raced) > 1:  # the view's second read (the fix) goes straight through
            await route.continue_()
            return
        response = await route.fetch()  # the page as it is now
        await say("between the page and the follower")
        socket_may_open.set()
        await connected(page)
        await page.wait_for_function("() => document.querySelector('#main .people-toggle') !== null")
        await asyncio.sleep(0.5)  # the follower's subscribe has been answered (from after that message)
        await say("live after both")
        await page.locator(".msg .text", has_text="live after both").wait_for()
        await route.fulfill(response=response)

    await page.route_web_socket("**/ws", hold_the_socket)
    await page.route("**/api/channels/room%3Ageneral/messages?limit=*", page_then_messages)
    await page.goto("/rooms/general")
    await page.locator(".msg .text", has_text="live after both").wait_for()
    await page.locator(".msg .text", has_text="between the page and the follower").wait_for(timeout=5000)
    assert len(raced) == 2, raced  # the page, then the read again that found the missing message
    assert_clean(page)


async def test_a_message_arriving_while_a_conversation_loads_stays_on_screen(browser: Any, web: AppServer) -> None:
    """The history page and the live stream race when a conversation opens: a message that arrives
    live while the page is on its way is newer than the page and must not be dropped with it."""
    await make_users(web, "alice", "bob")
    token = await token_of(web, "bob")
    async with web.client() as client:
        dm = (await client.post("/api/dms", json={"username": "alice"}, headers=bearer(token))).json()["channel"]
        await client.post(f"/api/channels/{dm}/messages", json={"data": {"text": "before"}}, headers=bearer(token))
    # No service worker: requests it makes are not routed, and this one must be.
    page = await new_page(browser, web.base_url, username="alice", viewport=PHONE, service_workers="block")
    await page.goto("/dms")
    await connected(page)
    row = page.locator(f'a.item[data-channel="{dm}"]')
    await row.locator(".sub", has_text="before").wait_for()  # the list follows the conversation live

    routed: list[str] = []

    async def page_then_live_message(route: Any) -> None:
        routed.append(route.request.url)
        if len(routed) > 1:  # the view reads again once it sees the channel moved on: only the first races
            await route.continue_()
            return
        response = await route.fetch()  # the page as it is now, without the next message
        async with web.client() as client:
            await client.post(f"/api/channels/{dm}/messages", json={"data": {"text": "during the load"}},
                              headers=bearer(token))
        await page.locator(".msg .text", has_text="during the load").wait_for()  # live, before the page
        await route.fulfill(response=response)

    await page.route("**/api/channels/*/messages?limit=*", page_then_live_message)
    await row.click()
    await page.locator(".msg .text", has_text="before").wait_for()  # the page has been shown
    assert routed, "the history request was not intercepted"
    assert await page.locator(".msg .text", has_text="during the load").count() == 1
    assert_clean(page)
