"""Issue 16, the client: editing, deleting and reacting to messages, @mentions, and what a member
sees when moderators act — in the PWA, driven in real browsers against a real server.

The first test has two members of one room in two browser contexts: alice on a desktop (she uses
hover and the mouse) and bob on a 360x740 touch phone (he holds a message for its actions). Bob
reacts 👍 and alice sees the chip live; alice edits (bob sees the new text and "(edited)" live) and
deletes (bob sees the tombstone live). Then bob goes offline while alice edits again, reacts,
toggles a reaction, writes and deletes: when bob comes back (recovery with `since`) his screen
shows exactly what alice's shows — text, "(edited)", tombstones, each reaction's count — and so do
both after a reload (history from the server). The action menu and the picker are fully on screen
at 360 px and nothing scrolls sideways.

The second test: carol on a 360 px phone mentions bob through the autocomplete with the keyboard
(also with the on-screen keyboard's height taken off the viewport); slow mode shows in the header
and sends her second message back to her box with the server's words; bob on a desktop is muted by
the room's owner and his message comes back to his box with "You are muted…"; bob reports a
message; the owner deletes bob's message; carol is kicked and sees the banner, and does not
resubscribe by herself after a reconnect.

Every page ends with zero page errors, console errors, failed requests and HTTP errors.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.browser.conftest import DESKTOP, assert_clean, connected, eventually, new_page, screenshot
from tests.support.appserver import AppServer
from tests.support.community import people

PHONE_360 = {"width": 360, "height": 740}
ROOM = "den"

# The conversation as rendered: one entry per message row (pending ones aside).
SNAPSHOT = """
() => [...document.querySelectorAll('#main .log > .msg:not(.pending)')].map((el) => ({
  offset: Number(el.dataset.offset),
  deleted: el.classList.contains('deleted'),
  tombstone: el.querySelector('.tombstone')?.textContent.startsWith('Message deleted') ?? false,
  text: el.querySelector('.text')?.textContent ?? null,
  edited: Boolean(el.querySelector('.edited:not([hidden])')),
  reactions: [...el.querySelectorAll('.chip[data-emoji]')]
    .map((chip) => [chip.dataset.emoji, Number(chip.querySelector('.chip-count').textContent)]),
}))
"""

# Is the element fully inside the viewport, clear of the top bar and the tab bar, and the page not
# scrolling sideways? Returns a list of problems.
ON_SCREEN = """
([selector, sizes]) => {
  const problems = [];
  const vw = window.innerWidth, vh = window.innerHeight;
  const fmt = (r) => `${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}x${Math.round(r.height)}`;
  const name = (el) => `"${el.textContent.trim()}"`;
  const wide = document.documentElement.scrollWidth;
  if (wide > vw) problems.push(`the page scrolls sideways (${wide} > ${vw})`);
  const el = document.querySelector(selector);
  if (!el) return [`${selector} is missing`];
  const r = el.getBoundingClientRect();
  if (r.left < -0.5 || r.top < -0.5 || r.right > vw + 0.5 || r.bottom > vh + 0.5)
    problems.push(`${selector} is not fully on screen: ${fmt(r)} in ${vw}x${vh}`);
  if (el.scrollWidth > el.clientWidth + 1) problems.push(`${selector} scrolls sideways inside`);
  if (!el.matches('dialog')) {
    for (const bar of [document.querySelector('.topbar'), document.getElementById('nav')]) {
      if (!bar || bar.hidden) continue;
      const b = bar.getBoundingClientRect();
      const overlap = Math.min(r.bottom, b.bottom) - Math.max(r.top, b.top);
      if (overlap > 0.5) problems.push(`${selector} overlaps ${bar.className}`);
    }
  }
  for (const button of el.querySelectorAll('button, [role=option]')) {
    const b = button.getBoundingClientRect();
    if (!b.width || !b.height || button.closest('[hidden]')) continue;
    if (sizes && b.height < 39.5) problems.push(`${name(button)} is only ${Math.round(b.height)} px tall`);
    const hit = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    if (!hit || !(hit === button || button.contains(hit))) problems.push(`a tap on ${name(button)} misses it`);
  }
  return problems;
}
"""


async def snapshot(page: Any) -> list[dict[str, Any]]:
    return list(await page.evaluate(SNAPSHOT))


async def on_screen(page: Any, selector: str, *, sizes: bool = True) -> None:
    """`selector` fully on screen, its buttons tappable (and 40 px tall when `sizes`)."""
    found = await page.evaluate(ON_SCREEN, [selector, sizes])
    assert found == [], found


async def long_press(page: Any, locator: Any, ms: int = 700) -> None:
    """Hold a finger on an element (a touch screen's long press), through the DevTools protocol."""
    box = await locator.bounding_box()
    assert box is not None
    point = {"x": box["x"] + 20, "y": box["y"] + box["height"] / 2}
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point]})
    await asyncio.sleep(ms / 1000)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    await cdp.detach()


def row(page: Any, text: str) -> Any:
    return page.locator("#main .log > .msg:not(.pending)", has_text=text)


async def send(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name=f"Message # {ROOM}")
    await box.fill(text)
    await box.press("Enter")
    await row(page, text).wait_for()


async def menu_of(page: Any, message: Any, author: str) -> Any:
    """Open a message's actions on a desktop: hover it, press its "…"."""
    await message.hover()
    await message.get_by_role("button", name=f"More actions on {author}'s message").click()
    dialog = page.get_by_role("dialog", name=f"Message from {author}")
    await dialog.wait_for()
    return dialog


async def same_screens(alice: Any, bob: Any) -> list[dict[str, Any]]:
    async def agree() -> Any:
        ours, theirs = await snapshot(alice), await snapshot(bob)
        return ours if ours == theirs else None
    shown = await eventually(agree, timeout=10)
    assert shown, (await snapshot(alice), await snapshot(bob))
    return list(shown)


async def setup_room(web: AppServer, *names: str) -> dict[str, dict[str, Any]]:
    async with web.client() as client:
        crowd = await people(client, *names)
        owner = crowd[names[0]]["headers"]
        response = await client.post("/api/rooms", json={"name": ROOM}, headers=owner)
        assert response.status_code == 201, response.text
        for name in names[1:]:
            response = await client.post(f"/api/rooms/{ROOM}/join", headers=crowd[name]["headers"])
            assert response.status_code == 200, response.text
    return crowd


async def test_edits_deletes_and_reactions_live_after_reconnect_and_reload(browser: Any, web: AppServer) -> None:
    await setup_room(web, "alice", "bob")
    alice = await new_page(browser, web.base_url, username="alice", viewport=DESKTOP)
    bob = await new_page(browser, web.base_url, username="bob", viewport=PHONE_360, has_touch=True, is_mobile=True)
    for page in (alice, bob):
        await page.goto(f"/rooms/{ROOM}")
        await connected(page)

    await send(alice, "Meet at spawn at 8")
    first = row(bob, "Meet at spawn at 8")
    await first.wait_for()

    # Bob holds the message: its actions open, fully on screen on his phone; he reacts 👍.
    await long_press(bob, first.locator(".text"))
    menu = bob.get_by_role("dialog", name="Message from alice")
    await menu.wait_for()
    await on_screen(bob, "dialog.msg-menu")
    assert await menu.get_by_role("button", name="Edit").count() == 0  # not his message
    assert await menu.get_by_role("button", name="Delete").count() == 0
    await screenshot(bob, "message-actions-menu-360")
    await menu.get_by_role("button", name="React 👍").tap()
    await menu.wait_for(state="detached")
    chip = row(alice, "Meet at spawn at 8").locator('.chip[data-emoji="👍"]')
    await chip.wait_for()
    assert await chip.locator(".chip-count").inner_text() == "1"
    assert await chip.get_attribute("aria-pressed") == "false"  # not alice's own reaction
    await row(bob, "Meet at spawn at 8").locator('.chip[data-emoji="👍"][aria-pressed="true"]').wait_for()

    # Alice edits from the hover menu: the composer takes the text; Enter saves; bob sees it live.
    dialog = await menu_of(alice, row(alice, "Meet at spawn at 8"), "alice")
    await dialog.get_by_role("button", name="Edit").click()
    box = alice.get_by_role("textbox", name=f"Message # {ROOM}")
    assert await box.input_value() == "Meet at spawn at 8"
    await alice.get_by_text("Editing your message").wait_for()
    await box.fill("Meet at spawn at 9")
    await box.press("Enter")
    edited = row(bob, "Meet at spawn at 9")
    await edited.locator(".edited", has_text="(edited)").wait_for()
    assert (await edited.locator(".edited").get_attribute("title") or "").startswith("Edited ")
    assert await box.input_value() == ""
    assert await alice.get_by_text("Editing your message").count() == 0

    # An edit cancelled with Escape changes nothing and gives the draft back.
    await box.fill("a draft")
    dialog = await menu_of(alice, row(alice, "Meet at spawn at 9"), "alice")
    await dialog.get_by_role("button", name="Edit").click()
    await box.press("Escape")
    assert await box.input_value() == "a draft"
    await box.fill("")

    # Alice writes and deletes; bob sees the tombstone live.
    await send(alice, "oops, wrong room")
    await row(bob, "oops, wrong room").wait_for()
    dialog = await menu_of(alice, row(alice, "oops, wrong room"), "alice")
    await dialog.get_by_role("button", name="Delete").click()
    await dialog.get_by_role("button", name="Delete message").click()
    await dialog.wait_for(state="detached")
    await bob.locator(".msg.deleted .tombstone", has_text="Message deleted").wait_for()
    await row(bob, "oops, wrong room").wait_for(state="detached")

    # Who reacted: the "…" chip lists them.
    await row(alice, "Meet at spawn at 9").get_by_role("button", name="Who reacted").click()
    who = alice.get_by_role("dialog", name="Reactions")
    await who.get_by_text("@bob").wait_for()
    await who.get_by_role("button", name="Close").click()

    await same_screens(alice, bob)
    await bob.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    await on_screen(bob, "#main .log")
    await screenshot(bob, "message-actions-360")
    await screenshot(alice, "message-actions-desktop")

    # Bob goes offline; alice edits again, reacts, toggles a reaction, writes and deletes.
    await bob.context.set_offline(True)
    await bob.locator('#conn[data-state="offline"]').wait_for()
    dialog = await menu_of(alice, row(alice, "Meet at spawn at 9"), "alice")
    await dialog.get_by_role("button", name="Edit").click()
    await box.fill("Meet at spawn at 10, @bob brings torches")
    await box.press("Enter")
    target = row(alice, "Meet at spawn at 10")
    await target.locator(".edited:not([hidden])").wait_for()
    await target.hover()
    await target.get_by_role("button", name="React to alice's message").click()
    picker = alice.get_by_role("dialog", name="React")
    await picker.get_by_role("button", name="React 🎉").click()
    await target.locator('.chip[data-emoji="🎉"][aria-pressed="true"]').wait_for()
    thumbs = target.locator('.chip[data-emoji="👍"]')
    await thumbs.click()  # not hers yet: react (2)
    await target.locator('.chip[data-emoji="👍"][aria-pressed="true"] .chip-count', has_text="2").wait_for()
    await thumbs.click()  # hers now: unreact (1)
    await target.locator('.chip[data-emoji="👍"][aria-pressed="false"] .chip-count', has_text="1").wait_for()
    await send(alice, "bring torches")
    await send(alice, "and food")
    dialog = await menu_of(alice, row(alice, "and food"), "alice")
    await dialog.get_by_role("button", name="Delete").click()
    await dialog.get_by_role("button", name="Delete message").click()
    await row(alice, "and food").wait_for(state="detached")
    torches = row(alice, "bring torches")
    await torches.hover()
    await torches.get_by_role("button", name="React to alice's message").click()
    await alice.get_by_role("dialog", name="React").get_by_role("button", name="React 🔥").click()
    await torches.locator('.chip[data-emoji="🔥"]').wait_for()
    assert await row(bob, "Meet at spawn at 9").count() == 1  # bob still shows the old state

    # Bob is back: recovery replays what he missed, and his screen is alice's.
    await bob.context.set_offline(False)
    await connected(bob)
    shown = await same_screens(alice, bob)
    assert [(m["text"], m["edited"], m["deleted"], m["reactions"]) for m in shown] == [
        ("Meet at spawn at 10, @bob brings torches", True, False, [["👍", 1], ["🎉", 1]]),
        (None, False, True, []),
        ("bring torches", False, False, [["🔥", 1]]),
        (None, False, True, []),
    ], shown
    assert all(m["tombstone"] for m in shown if m["deleted"])

    # A reload reads the history from the server: the same screen again, on both sides.
    for page in (bob, alice):
        await page.reload()
        await connected(page)
        await page.locator("#main .log > .msg").first.wait_for()
    assert await same_screens(alice, bob) == shown
    await row(bob, "Meet at spawn at 10").locator('.chip[data-emoji="👍"][aria-pressed="true"]').wait_for()

    # Bob taps his own chip: his reaction goes, for alice too.
    await row(bob, "Meet at spawn at 10").locator('.chip[data-emoji="👍"]').tap()
    await row(alice, "Meet at spawn at 10").locator('.chip[data-emoji="👍"]').wait_for(state="detached")

    # The picker on the phone (the "…" button, then React) is fully on screen too.
    more = row(bob, "bring torches").get_by_role("button", name="More actions on alice's message")
    await more.tap()
    await bob.get_by_role("dialog", name="Message from alice").wait_for()
    await on_screen(bob, "dialog.msg-menu")
    await bob.keyboard.press("Escape")
    await bob.locator("dialog").wait_for(state="detached")

    # Events are not new messages: bob, on the room list, gets no unread count from an edit or a
    # reaction of alice's — only from her next message.
    await bob.locator('#nav a[data-nav="rooms"]').tap()
    link = bob.locator(f'a.item[data-channel="room:{ROOM}"]')
    await link.wait_for()
    dialog = await menu_of(alice, row(alice, "bring torches"), "alice")
    await dialog.get_by_role("button", name="Edit").click()
    await box.fill("bring torches and food")
    await box.press("Enter")
    await row(alice, "bring torches and food").locator(".edited:not([hidden])").wait_for()
    await row(alice, "bring torches and food").locator('.chip[data-emoji="🔥"]').click()  # hers: unreact
    await row(alice, "bring torches and food").locator('.chip[data-emoji="🔥"]').wait_for(state="detached")
    await asyncio.sleep(0.5)
    assert await link.get_attribute("data-unread") == "0"
    await send(alice, "see you there")
    await bob.locator(f'a.item[data-channel="room:{ROOM}"][data-unread="1"]').wait_for()
    rooms = await (await bob.context.request.get("/api/rooms")).json()
    assert [r["unread"] for r in rooms["rooms"] if r["channel"] == f"room:{ROOM}"] == [1]
    assert_clean(alice, bob)


async def test_mentions_slow_mode_mute_report_and_kick(browser: Any, web: AppServer) -> None:
    crowd = await setup_room(web, "alice", "bob", "carol")
    owner = crowd["alice"]["headers"]
    async with web.client() as client:
        response = await client.put(f"/api/rooms/{ROOM}/slow-mode", json={"seconds": 30}, headers=owner)
        assert response.status_code == 200, response.text
    alice = await new_page(browser, web.base_url, username="alice", viewport=DESKTOP)
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP)
    carol = await new_page(browser, web.base_url, username="carol", viewport=PHONE_360)
    for page in (alice, bob, carol):
        await page.goto(f"/rooms/{ROOM}")
        await connected(page)
    await carol.locator(".chat-head .slow-hint", has_text="Slow mode: 30 s").wait_for()
    await on_screen(carol, ".chat-head", sizes=False)  # the header's own buttons are older than this issue

    # Carol mentions bob: "@" lists the members (not her), Down and Enter pick bob.
    box = carol.get_by_role("textbox", name=f"Message # {ROOM}")
    await box.click()
    await box.press_sequentially("hey @")
    listbox = carol.get_by_role("listbox", name="Mention someone")
    await listbox.wait_for()
    assert await listbox.get_by_role("option").all_inner_texts() == ["@alice\nowner", "@bob"]
    await on_screen(carol, ".mentions")
    await box.press("ArrowDown")
    assert await listbox.get_by_role("option", name="@bob").get_attribute("aria-selected") == "true"
    await box.press("Enter")
    await listbox.wait_for(state="hidden")
    assert await box.input_value() == "hey @bob "
    # Typing narrows the list; with the on-screen keyboard up (a shorter viewport) it still fits.
    await carol.set_viewport_size({"width": 360, "height": 420})
    await box.press_sequentially("and @al")
    await listbox.get_by_role("option").first.wait_for()
    assert await listbox.get_by_role("option").all_inner_texts() == ["@alice\nowner"]
    await on_screen(carol, ".mentions")
    await screenshot(carol, "mentions-360-keyboard")
    await box.press("Tab")
    assert await box.input_value() == "hey @bob and @alice "
    await box.press("Escape")
    await box.press("Enter")
    sent = row(bob, "hey @bob and @alice")
    await sent.locator("strong.mention", has_text="@bob").wait_for()
    await carol.set_viewport_size(PHONE_360)

    # Slow mode: her second message within 30 s comes back to her box with the server's words.
    await box.fill("one more thing")
    await box.press("Enter")
    note = carol.locator(".composer-note")
    await note.filter(has_text="Slow mode").wait_for()
    assert "Try again in" in await note.inner_text()
    assert await box.input_value() == "one more thing"
    await carol.locator(".msg.pending").wait_for(state="detached")
    queued = "import('/static/js/outbox.js').then((outbox) => outbox.all()).then((items) => items.length)"
    assert await carol.evaluate(queued) == 0  # not left in the outbox to be retried
    await on_screen(carol, ".composer")
    await screenshot(carol, "slow-mode-360")
    await box.fill("")

    bob_box = bob.get_by_role("textbox", name=f"Message # {ROOM}")
    await bob_box.fill("hello den")
    await bob_box.press("Enter")
    await row(alice, "hello den").wait_for()

    # Bob is muted by the room's owner: his message comes back with "You are muted…".
    async with web.client() as client:
        response = await client.post("/api/moderation/sanctions", headers=owner, json={
            "kind": "mute", "username": "bob", "channel": f"room:{ROOM}", "minutes": 5, "reason": "x"})
        assert response.status_code == 201, response.text
    await bob_box.fill("can I still talk?")
    await bob_box.press("Enter")
    await bob.locator(".composer-note", has_text="You are muted in this room until").wait_for()
    assert await bob_box.input_value() == "can I still talk?"
    await bob.locator(".msg.pending").wait_for(state="detached")
    assert await row(alice, "can I still talk?").count() == 0
    await screenshot(bob, "muted-desktop")
    # An edit is refused too: the server's words show, the edit stays open; Escape gives the draft back.
    dialog = await menu_of(bob, row(bob, "hello den"), "bob")
    await dialog.get_by_role("button", name="Edit").click()
    assert await bob_box.input_value() == "hello den"
    await bob_box.fill("hello den!")
    await bob_box.press("Enter")
    await bob.locator(".composer-note", has_text="You are muted in this room until").wait_for()
    await bob.get_by_text("Editing your message").wait_for()
    assert await bob_box.input_value() == "hello den!"
    await bob_box.press("Escape")
    assert await bob_box.input_value() == "can I still talk?"
    assert await row(alice, "hello den!").count() == 0

    # Bob reports carol's message (the menu has no Edit or Delete for him there).
    dialog = await menu_of(bob, sent, "carol")
    assert await dialog.get_by_role("button", name="Delete").count() == 0
    await dialog.get_by_role("button", name="Report").click()
    await dialog.get_by_role("textbox").fill("spam")
    await dialog.get_by_role("button", name="Send report").click()
    await dialog.get_by_role("status").filter(has_text="Reported").wait_for()
    await dialog.get_by_role("button", name="Close").click()

    # The owner deletes carol's message (a moderator's delete): everyone sees the tombstone.
    dialog = await menu_of(alice, row(alice, "hey @bob and @alice"), "carol")
    await dialog.get_by_role("button", name="Delete").click()
    await dialog.get_by_role("button", name="Delete message").click()
    for page in (alice, bob, carol):
        await page.locator(".msg.deleted").wait_for()

    # Carol is kicked: a banner says so, she cannot send, and a reconnect does not resubscribe her.
    async with web.client() as client:
        response = await client.post(f"/api/rooms/{ROOM}/kick", json={"username": "carol", "reason": "be nice"},
                                     headers=owner)
        assert response.status_code == 204, response.text
    banner = carol.locator(".removed-banner[role=alert]")
    await banner.filter(has_text="You were removed from this room").wait_for()
    assert await box.is_disabled()
    await on_screen(carol, ".removed-banner")
    await screenshot(carol, "removed-360")

    async def present() -> list[str]:
        response = await alice.context.request.get(f"/api/channels/room:{ROOM}/presence")
        return sorted(u["username"] for u in (await response.json())["users"])
    assert await eventually(lambda: _equals(present, ["alice", "bob"]))
    await carol.context.set_offline(True)
    await carol.locator('#conn[data-state="offline"]').wait_for()
    await carol.context.set_offline(False)
    await connected(carol)
    await asyncio.sleep(1.0)
    assert await present() == ["alice", "bob"]
    await banner.wait_for()
    assert_clean(alice, bob, carol)


async def _equals(check: Any, expected: Any) -> bool:
    return bool(await check() == expected)
