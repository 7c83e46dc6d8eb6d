"""Issue 16, the client: profiles, friends and blocks in the PWA.

Two members in two browser contexts (alice on a 360x740 phone, bob on a desktop): alice opens bob's
profile from his chat message and sends a friend request; bob sees it arrive on the friends screen
and in the tab bar's badge without a reload (and without the list being asked again) and accepts;
alice's view of bob's profile turns to "friends" live, then to "last seen" when bob closes his
page. Alice edits her display name and bio (a bio over the limit is refused next to the field),
blocks bob — his messages fold into "Blocked message" rows, one unfolds on "Show" — unblocks him
from the friends screen, uploads a picture (previewed from the file before anything is sent), sees
it on her profile and removes it.

A second test measures every new screen at 360x740 and at a desktop width, with all four sections
of the friends screen filled, 32-character names and a 64-character display name: nothing scrolls
sideways, nothing sits under the top bar or the tab bar (a tap at each control's centre hits it),
and every control of the new screens is at least 40 px tall. It also opens a profile from the room
panel's member list and meets a friends-only DM setting. Screenshots: artifacts/screenshots/people-*.

Every page ends with zero page errors, console errors and failed requests, except the refusals the
test asks for (the too-long bio 422, an unknown username 404, the friends-only DM 403).

The new screens are reached through the app (links, the tab bar, History API navigation): the
server's shell routes do not list /u/<name>, /friends and /settings/profile yet, so a page load
there would be a 404.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from tests.browser.conftest import (
    DESKTOP,
    connected,
    eventually,
    new_page,
    problems,
    screenshot,
    server_json,
)
from tests.browser.test_layout import MEASURE
from tests.support.appserver import AppServer
from tests.support.community import people, say

PHONE_360 = {"width": 360, "height": 740}
WIDE = {"width": 1366, "height": 800}
BIO_MAX = 500

# The new screens' own checks, on top of test_layout's MEASURE: every control is reachable (scrolled
# into view, a tap at its centre hits it, not the top bar or the tab bar) and at least 40 px tall.
TARGETS = """
(selector) => {
  const problems = [];
  const label = (el) => el.tagName.toLowerCase()
    + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '')
    + ' "' + (el.textContent || el.value || '').trim().slice(0, 30) + '"';
  const bars = [document.querySelector('.topbar'), document.getElementById('nav')]
    .filter((el) => el && !el.hidden).map((el) => el.getBoundingClientRect());
  for (const el of document.querySelectorAll(selector)) {
    const style = getComputedStyle(el);
    // hidden, or inside a closed <details> (not shown, though Chromium still gives it a box)
    if (el.closest('[hidden], details:not([open]) > :not(summary)') || style.display === 'none'
        || style.visibility === 'hidden') continue;
    el.scrollIntoView({ block: 'center', inline: 'nearest' });
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const target = el.matches('input[type=radio], input[type=checkbox]') ? el.closest('label') : el;
    const t = target.getBoundingClientRect();
    if (t.height < 39.5) problems.push(`${label(target)} is only ${Math.round(t.height)} px tall`);
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    for (const bar of bars) {
      const under = x >= bar.left && x <= bar.right && y >= bar.top && y <= bar.bottom;
      if (under) problems.push(`${label(el)} is under a bar`);
    }
    const hit = document.elementFromPoint(x, y);
    if (!hit || !(hit === el || el.contains(hit) || (el.labels && [...el.labels].some((l) => l.contains(hit)))))
      problems.push(`a tap on ${label(el)} hits ${hit ? label(hit) : 'nothing'}`);
  }
  document.getElementById('main').scrollTop = 0;
  return problems;
}
"""
# A message's picture is 36 px; its link answers taps 2 px around it too (a 40 px target).
AVATAR_TARGET = """
() => {
  const problems = [];
  for (const link of document.querySelectorAll('.msg a.avatar-link')) {
    const r = link.getBoundingClientRect();
    for (const [x, y] of [[r.left - 2, r.top - 2], [r.right + 2, r.bottom + 2], [r.left - 2, r.bottom + 2]]) {
      const hit = document.elementFromPoint(x, y);
      if (!hit || !link.contains(hit)) problems.push(`a tap at ${Math.round(x)},${Math.round(y)} misses ${link.href}`);
    }
    if (r.width + 4 < 39.5) problems.push(`the picture link of ${link.href} is ${Math.round(r.width)} px`);
  }
  return problems;
}
"""
CONTROLS = ("#main button, #main a.btn, #main a.person, #main input, #main textarea, #main select, "
            "#main .list .member-link")


def png(size: int = 48) -> bytes:
    """A small emerald-and-slate PNG (no imaging library needed)."""
    rows = b"".join(b"\x00" + b"".join(
        (b"\x10\xb9\x81" if (x // 8 + y // 8) % 2 else b"\x0f\x17\x2a") for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def open_in_app(page: Any, path: str) -> None:
    """Go to a client route the way the app's own links do (History API, no page load)."""
    await page.evaluate("(path) => { history.pushState({}, '', path); dispatchEvent(new PopStateEvent('popstate')); }",
                        path)


async def measure(page: Any, name: str, *, phone: bool, found: list[str]) -> None:
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(MEASURE, {"phone": phone, "chat": False})
    issues += await page.evaluate(TARGETS, CONTROLS)
    await screenshot(page, f"people-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


def clean(page: Any, *, allowed: tuple[tuple[int, str, str], ...] = ()) -> dict[str, list[str]]:
    """What went wrong in the page, less the refusals the test asked for: (status, method, path)
    answers and the console line the browser logs for each."""
    found = problems(page)
    expected = [r for r in found["status"]
                if any(r.startswith(f"{status} {method} ") and r.endswith(path) for status, method, path in allowed)]
    found["status"] = [r for r in found["status"] if r not in expected]
    for status, _, _ in allowed:
        lines = [c for c in found["console"] if f"status of {status}" in c]
        for line in lines[:sum(r.startswith(f"{status} ") for r in expected)]:
            found["console"].remove(line)
    return {kind: items for kind, items in found.items() if items}


async def test_friends_profiles_and_blocks_live(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        crowd = await people(client, "alice", "bob")
        await say(client, crowd["bob"], "room:general", {"text": "hello from bob"})
        await say(client, crowd["bob"], "room:general", {"text": "anyone up for the nether highway?"})
    layout: list[str] = []
    alice = await new_page(browser, web.base_url, username="alice", viewport=PHONE_360)
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP)

    # Alice taps bob's name on his message: his profile.
    await alice.goto("/rooms/general")
    await connected(alice)
    await alice.locator(".msg a.who", has_text="bob").first.click()
    await alice.wait_for_url("**/u/bob")
    profile = alice.locator("section.profile")
    await profile.get_by_role("heading", name="bob").wait_for()
    await profile.get_by_text("@bob").wait_for()
    await profile.locator(".facts dd", has_text="0 XP").wait_for()
    await measure(alice, "profile-other-360", phone=True, found=layout)

    # Bob sits on his friends screen (reached from the tab bar), empty so far.
    await bob.goto("/rooms")
    await connected(bob)
    await bob.locator('#nav a[data-nav="friends"]').click()
    await bob.get_by_role("heading", name="Friends", level=1).wait_for()
    await bob.get_by_text("No friends yet.").wait_for()
    await bob.evaluate("window.__sameDocument = true")
    lists_asked = sum("/api/friends" in r and r.startswith("GET ") for r in bob.requests)

    await profile.get_by_role("button", name="Add friend").click()
    await profile.locator('.relation[data-relationship="outgoing"]', has_text="Friend request sent").wait_for()
    await profile.get_by_role("button", name="Cancel request").wait_for()

    # Bob: the request arrives live, on the screen and as the tab bar's badge.
    incoming = bob.locator('section[data-section="incoming"] li[data-user="alice"]')
    await incoming.wait_for()
    badge = bob.locator("#friends-count")
    await badge.wait_for()
    assert await badge.inner_text() == "1"
    assert await bob.evaluate("window.__sameDocument === true")  # no reload
    assert sum("/api/friends" in r and r.startswith("GET ") for r in bob.requests) == lists_asked  # nor a refetch
    await measure(bob, "friends-incoming-desktop", phone=False, found=layout)
    await incoming.get_by_role("button", name="Accept alice").click()
    await bob.locator('section[data-section="friends"] li[data-user="alice"]').wait_for()
    await badge.wait_for(state="hidden")
    await bob.locator('section[data-section="incoming"]').wait_for(state="hidden")

    # Alice's view of bob turns to "friends" live, bob shown online (he is connected).
    await profile.locator('.relation[data-relationship="friends"]').wait_for()
    await profile.locator('.presence[data-presence="online"]').wait_for()
    await profile.get_by_role("button", name="Remove friend").wait_for()

    # Bob closes his page: alice sees him go, with when he was last seen.
    bob_requests = list(bob.requests)
    bob_found = clean(bob)
    await bob.context.close()
    offline = profile.locator('.presence[data-presence="offline"]')
    await offline.wait_for(timeout=15000)
    assert (await offline.inner_text()).startswith("Last seen ")
    assert bob_found == {}, bob_found
    assert sum("/api/friends" in r and r.startswith("GET ") for r in bob_requests) == lists_asked  # never polled

    # Her friends screen lists him, offline, with the same words.
    await alice.locator('#nav a[data-nav="friends"]').click()
    friend = alice.locator('section[data-section="friends"] li[data-user="bob"]')
    await friend.get_by_text("Last seen").wait_for()
    await measure(alice, "friends-360", phone=True, found=layout)

    # Alice edits her profile: settings -> Edit profile.
    await alice.locator('#nav a[data-nav="settings"]').click()
    await alice.get_by_role("link", name="Edit profile").click()
    await alice.wait_for_url("**/settings/profile")
    await alice.get_by_role("heading", name="Edit profile").wait_for()
    await measure(alice, "profile-edit-360", phone=True, found=layout)
    await alice.get_by_label("Display name").fill("Alice the Builder")
    await alice.get_by_label("Bio").fill("x" * (BIO_MAX + 1))
    await alice.locator("#bio-count", has_text=f"{BIO_MAX + 1} / {BIO_MAX} — too long").wait_for()
    await alice.get_by_role("button", name="Save profile").click()
    bio_error = alice.locator("#bio-error")
    await bio_error.wait_for()
    assert "500" in await bio_error.inner_text(), await bio_error.inner_text()
    assert await alice.get_by_label("Bio").get_attribute("aria-invalid") == "true"
    saved = await server_json(alice, "/api/users/me")
    assert saved["display_name"] != "Alice the Builder" and saved["bio"] is None  # nothing was stored
    await alice.get_by_label("Bio").fill("Redstone engineer.\nBuilds mob farms on weekends.")
    await alice.locator("#bio-count", has_text=f"48 / {BIO_MAX}").wait_for()
    await alice.get_by_label("Friends only").check()
    await alice.get_by_role("button", name="Save profile").click()
    await alice.get_by_text("Profile saved.").wait_for()
    await bio_error.wait_for(state="hidden")
    saved = await server_json(alice, "/api/users/me")
    assert (saved["display_name"], saved["bio"], saved["dm_policy"]) == (
        "Alice the Builder", "Redstone engineer.\nBuilds mob farms on weekends.", "friends")

    # Her own profile shows them, and offers "Edit profile".
    await alice.get_by_role("link", name="View profile").click()
    await alice.wait_for_url("**/u/alice")
    own = alice.locator('section.profile[data-relationship="self"]')
    await own.get_by_role("heading", name="Alice the Builder").wait_for()
    await own.get_by_text("Builds mob farms on weekends.").wait_for()
    await own.get_by_role("link", name="Edit profile").wait_for()
    await measure(alice, "profile-self-360", phone=True, found=layout)

    # Alice blocks bob (asked once more); his messages fold away.
    await alice.locator('#nav a[data-nav="friends"]').click()
    await friend.locator("a.person").click()
    await alice.wait_for_url("**/u/bob")
    await profile.get_by_role("button", name="Block").click()
    await profile.get_by_text("Block bob? You won't see their messages").wait_for()
    await measure(alice, "profile-confirm-block-360", phone=True, found=layout)
    await profile.get_by_role("button", name="Block bob").click()
    await profile.locator('.relation[data-relationship="blocked"]').wait_for()
    await profile.get_by_role("button", name="Unblock").wait_for()
    assert await profile.get_by_role("button", name="Message").count() == 0
    await alice.locator('#nav a[data-nav="rooms"]').click()
    await alice.locator('a.item[data-channel="room:general"]').click()
    blocked = alice.locator(".msg.blocked")
    await blocked.first.wait_for()
    assert await blocked.count() == 2
    assert await alice.locator(".msg .text", has_text="hello from bob").count() == 0
    assert await blocked.first.inner_text() == "Blocked message\nShow"
    await blocked.first.get_by_role("button", name="Show blocked message from bob").click()
    await alice.locator(".msg .text", has_text="hello from bob").wait_for()
    assert await blocked.count() == 1
    await screenshot(alice, "people-chat-blocked-360")
    found = await alice.evaluate(MEASURE, {"phone": True, "chat": True})
    layout.extend(f"chat-blocked-360: {p}" for p in found)

    # ... and unblocks him from the friends screen: the room shows his messages again.
    await alice.locator('#nav a[data-nav="friends"]').click()
    unblock = alice.locator('section[data-section="blocked"] li[data-user="bob"]')
    await unblock.get_by_role("button", name="Unblock bob").click()
    await unblock.wait_for(state="detached")
    assert (await server_json(alice, "/api/friends"))["blocked"] == []
    await alice.go_back()
    await alice.locator(".msg .text", has_text="anyone up for the nether highway?").wait_for()
    assert await alice.locator(".msg.blocked").count() == 0

    assert not layout, "\n".join(layout)

    # A picture: previewed from the file before anything is sent, then uploaded and shown.
    await alice.locator('#nav a[data-nav="settings"]').click()
    await alice.get_by_role("link", name="Edit profile").click()
    await alice.wait_for_url("**/settings/profile")
    await alice.get_by_label("Choose a picture").set_input_files(
        files=[{"name": "me.png", "mimeType": "image/png", "buffer": png()}])
    preview = alice.locator(".avatar-edit img.preview")
    await preview.wait_for()
    assert (await preview.get_attribute("src") or "").startswith("data:image/png;base64,")  # read in the page
    assert await preview.evaluate("(img) => img.complete && img.naturalWidth === 48")
    assert not any("/avatar" in r and r.startswith("PUT ") for r in alice.requests)
    await alice.get_by_text("Preview — not uploaded yet.").wait_for()
    await alice.get_by_role("button", name="Upload picture").click()
    await alice.get_by_text("Picture updated.").wait_for()
    shown = alice.locator(".avatar-edit img")
    await preview.wait_for(state="detached")
    src = await shown.get_attribute("src") or ""
    uploaded = (await server_json(alice, "/api/users/me"))["avatar"]
    assert uploaded and src == uploaded["large"], (src, uploaded)
    assert await eventually(lambda: shown.evaluate("(img) => img.complete && img.naturalWidth > 0"))
    await alice.get_by_role("button", name="Remove picture").wait_for()

    await alice.get_by_role("link", name="View profile").click()
    await own.get_by_role("heading", name="Alice the Builder").wait_for()
    assert await own.locator("img.avatar-lg").get_attribute("src") == uploaded["large"]
    loaded = "(img) => img.complete && img.naturalWidth > 0"
    assert await eventually(lambda: own.locator("img.avatar-lg").evaluate(loaded))
    await screenshot(alice, "people-profile-self-picture-360")

    # Removing it brings the initial back.
    await own.get_by_role("link", name="Edit profile").click()
    await alice.get_by_role("button", name="Remove picture").click()
    await alice.get_by_text("Picture removed.").wait_for()
    assert await alice.locator(".avatar-edit img").get_attribute("src") == "/avatars/alice.svg"
    assert (await server_json(alice, "/api/users/me"))["avatar"] is None

    found = clean(alice, allowed=((422, "PATCH", "/api/users/me"),))
    assert found == {}, found
    await alice.context.close()


ME = "averyveryverylongusername_alice1"     # 32 characters: the signed-in member
ASKS = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb_b"   # sent her a request (no break opportunity)
ASKED = "charlie_the_builder_of_far_lands"  # she asked them
FRIEND = "dave_who_digs_the_nether_highway"  # her friend, with a 64-character display name and a long bio
BLOCKED = "eve_the_griefer_of_spawn_town_xx"  # she blocked them; they wrote in #general
WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4


async def seed_people(web: AppServer) -> None:
    async with web.client() as client:
        crowd = await people(client, ME, ASKS, ASKED, FRIEND, BLOCKED)
        me = crowd[ME]["headers"]

        async def ok(method: str, path: str, headers: dict[str, str], **body: Any) -> None:
            response = await client.request(method, path, headers=headers, json=body or None)
            assert response.status_code < 300, (path, response.status_code, response.text)

        await ok("POST", "/api/friends", crowd[ASKS]["headers"], username=ME)
        await ok("POST", "/api/friends", me, username=ASKED)
        await ok("POST", "/api/friends", me, username=FRIEND)
        await ok("POST", f"/api/friends/{ME}/accept", crowd[FRIEND]["headers"])
        await ok("PATCH", "/api/users/me", crowd[FRIEND]["headers"], display_name="D" * 30 + " " + "X" * 33,
                 bio=f"Tunnels and {WORD}\n" + "rails, " * 40)
        await ok("PATCH", "/api/users/me", me, bio="Builder " + WORD)
        await ok("PATCH", "/api/users/me", crowd[ASKS]["headers"], dm_policy="friends")
        await ok("PUT", f"/api/blocks/{BLOCKED}", me)
        for who in (me, crowd[FRIEND]["headers"]):
            await ok("POST", "/api/rooms/general/join", who)
        await say(client, crowd[BLOCKED], "room:general", {"text": "spawn is mine " + WORD})
        await say(client, crowd[FRIEND], "room:general", {"text": f"@{ME} the highway is done " + WORD})


async def test_people_screens_fit_phone_and_desktop(browser: Any, web: AppServer) -> None:
    await seed_people(web)
    layout: list[str] = []
    for size, viewport in (("360", PHONE_360), ("1366", WIDE)):
        phone = viewport["width"] < 768
        page = await new_page(browser, web.base_url, username=ME, viewport=viewport)
        await page.goto("/rooms/general")
        await connected(page)
        blocked = page.locator(".msg.blocked")
        await blocked.wait_for()
        assert await page.locator(".msg .text", has_text="spawn is mine").count() == 0
        await page.locator(".msg .text", has_text="the highway is done").wait_for()
        await page.locator('#friends-count:not([hidden])', has_text="1").wait_for()  # one request waits
        found = await page.evaluate(MEASURE, {"phone": phone, "chat": True})
        found += await page.evaluate(TARGETS, ".msg.blocked button")
        found += await page.evaluate(AVATAR_TARGET)
        layout.extend(f"{size}-chat-blocked: {p}" for p in found)
        await screenshot(page, f"people-{size}-chat-blocked")

        # A member in the room panel's list leads to their profile (and closes the panel).
        await page.get_by_role("button", name="Room info: # general").click()
        member = page.locator("dialog .member-link", has_text=FRIEND)
        await member.wait_for()
        await member.click()
        await page.wait_for_url(f"**/u/{FRIEND}")
        assert await page.locator("dialog").count() == 0
        head = page.locator("section.profile .profile-head h1")
        await head.wait_for()
        assert (await head.inner_text()).startswith("DDD")
        await page.locator('.relation[data-relationship="friends"]').wait_for()
        await measure(page, f"{size}-profile-friend", phone=phone, found=layout)

        for name, relation in ((ASKS, "incoming"), (ASKED, "outgoing"), (BLOCKED, "blocked"), (ME, "self")):
            await open_in_app(page, f"/u/{name}")
            await page.locator(f'section.profile[data-relationship="{relation}"][data-user="{name}"]').wait_for()
            if relation == "incoming":  # their DMs are for friends only: the refusal says so, in place
                await page.get_by_role("button", name="Message").click()
                await page.locator("section.profile [role=alert]",
                                   has_text=f"{ASKS} only accepts direct messages from friends.").wait_for()
                assert page.url.endswith(f"/u/{ASKS}")
            await measure(page, f"{size}-profile-{relation}", phone=phone, found=layout)

        await page.locator('#nav a[data-nav="friends"]').click()
        for section in ("incoming", "friends", "outgoing", "blocked"):
            await page.locator(f'section[data-section="{section}"] li.person-row').first.wait_for()
        await page.get_by_role("textbox", name="Add a friend").fill("nobody_by_that_name")
        await page.get_by_role("button", name="Send request").click()
        await page.locator("#add-friend-error", has_text="There is no member called nobody_by_that_name.").wait_for()
        await measure(page, f"{size}-friends", phone=phone, found=layout)

        await open_in_app(page, "/settings/profile")
        await page.get_by_role("heading", name="Edit profile").wait_for()
        await page.get_by_label("Choose a picture").set_input_files(
            files=[{"name": "me.png", "mimeType": "image/png", "buffer": png()}])
        await page.locator(".avatar-edit img.preview").wait_for()
        await page.get_by_label("Bio").fill("y" * (BIO_MAX + 20))
        await page.get_by_role("button", name="Save profile").click()
        await page.locator("#bio-error").wait_for()
        await measure(page, f"{size}-profile-edit", phone=phone, found=layout)

        found = clean(page, allowed=((404, "POST", "/api/friends"), (403, "POST", "/api/dms"),
                                     (422, "PATCH", "/api/users/me")))
        assert found == {}, found
        await page.context.close()
    assert not layout, "\n".join(layout)
