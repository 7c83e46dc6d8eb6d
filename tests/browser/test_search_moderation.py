"""Issue 16, the client: search and moderation in the PWA, in real browsers against a real server.

The first test has four members: bob on a 360x740 phone searches (the top bar's search button):
typing "diamonds" sends one request once he pauses, the results show the matched words in <mark>
with who wrote them, where and when, "Load more" fetches the next page, a 201-character question is
refused next to the box (422), and the Members tab finds the offender, whose profile opens. Bob
reports the offender's message from its search result and the offender from their profile. A site
moderator on a desktop sits on /moderation: both reports arrive live (no reload, the queue is not
asked again), the tab bar's count follows; the moderator mutes the offender for 10 minutes from the
message report (asked once more) — it moves to Resolved — and the offender, in the room on their
phone, sees "You are muted in # den until …"; the member report is dismissed; the mute is lifted
from the Sanctions tab and the offender's notice goes. A search result opens the conversation at
the message. The moderator's profile view offers site-wide Mute and Ban; a member's does not.

The second test: the room's owner (desktop) sets slow mode and appoints bob moderator from the room
panel; bob (phone) sees the tools for members below him only; while he is asked once more, the
owner takes the role back, and the server's refusal (403 not_moderator) shows in bob's form; the
owner kicks the offender, who sees it in the room.

Layout: /search and /moderation (with a form open), the profile with its moderation form and the
room panel with a member's tools are measured at 360x740 and at a desktop width with test_layout's
geometry (nothing sideways, nothing under the bars) and test_people's tap targets (each control
hit at its centre, at least 40 px tall). Screenshots: artifacts/screenshots/searchmod-*.

Every page ends with zero page errors, console errors, failed requests and HTTP errors, except the
refusals the test asks for (the 422 of the too-long search, the 403 of the taken-back role).
"""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import DESKTOP, connected, eventually, new_page, problems, screenshot, server_json
from tests.browser.test_layout import MEASURE
from tests.browser.test_people import TARGETS, open_in_app
from tests.support.appserver import AppServer
from tests.support.community import people, say

PHONE_360 = {"width": 360, "height": 740}
WIDE = {"width": 1366, "height": 800}
ROOM = "den"
OFFENDER = "mallory_the_merchant_of_spawn_xx"  # 32 characters
SCAM = "selling cheap diamonds at spawn, pay first"
WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4  # no break opportunity
CONTROLS = ("#main button, #main a.btn, #main a.person, #main a.item.hit, #main input, #main textarea, "
            "#main select, #main .tab")
# The room panel: its controls (scrolled into view) are hit at their centre and 40 px tall. The
# dialog is modal (above the bars), so only the tap and the size count.
DIALOG_TARGETS = """
(selector) => {
  const problems = [];
  const vw = window.innerWidth, vh = window.innerHeight;
  const label = (el) => el.tagName.toLowerCase() + ' "' + (el.textContent || el.value || '').trim().slice(0, 30) + '"';
  const dialog = document.querySelector('dialog[open]');
  if (!dialog) return ['no open dialog'];
  const d = dialog.getBoundingClientRect();
  if (d.left < -0.5 || d.top < -0.5 || d.right > vw + 0.5 || d.bottom > vh + 0.5)
    problems.push('the dialog is off screen');
  if (dialog.scrollWidth > dialog.clientWidth + 1) problems.push('the dialog scrolls sideways');
  for (const el of dialog.querySelectorAll(selector)) {
    if (el.closest('[hidden]') || !el.getClientRects().length) continue;
    el.scrollIntoView({ block: 'center', inline: 'nearest' });
    const r = el.getBoundingClientRect();
    if (r.height < 39.5) problems.push(`${label(el)} is only ${Math.round(r.height)} px tall`);
    if (r.left < d.left - 0.5 || r.right > d.right + 0.5) problems.push(`${label(el)} pokes out of the dialog`);
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    if (!hit || !(hit === el || el.contains(hit) || (el.labels && [...el.labels].some((l) => l.contains(hit)))))
      problems.push(`a tap on ${label(el)} hits ${hit ? label(hit) : 'nothing'}`);
  }
  return problems;
}
"""
TOP_SEARCH = """
() => {
  const el = document.getElementById('top-search');
  const r = el.getBoundingClientRect();
  const problems = [];
  if (el.hidden || !r.width) return ['the search button is not shown'];
  if (r.height < 39.5 || r.width < 39.5)
    problems.push(`the search button is ${Math.round(r.width)}x${Math.round(r.height)}`);
  if (r.right > window.innerWidth + 0.5 || r.left < -0.5) problems.push('the search button is off screen');
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  if (!hit || !el.contains(hit)) problems.push('a tap on the search button misses it');
  return problems;
}
"""


async def make_moderator(server: AppServer, username: str) -> None:
    """A site moderator (as tests/support/accounts.make_admin makes admins)."""
    from server.db.queries import users

    db = server.resources.db
    user = await users.by_username(db, username)
    await users.update(db, user["id"], role="moderator")
    await server.resources.auth.user_changed(user["id"])  # cached principals learn the new role


async def seed(web: AppServer) -> dict[str, dict[str, Any]]:
    """alice owns #den; bob and the offender are members; modesty is a site moderator."""
    async with web.client() as client:
        crowd = await people(client, "alice", "bob", OFFENDER, "modesty")
        response = await client.post("/api/rooms", json={"name": ROOM}, headers=crowd["alice"]["headers"])
        assert response.status_code == 201, response.text
        for name in ("bob", OFFENDER):
            response = await client.post(f"/api/rooms/{ROOM}/join", headers=crowd[name]["headers"])
            assert response.status_code == 200, response.text
        crowd[OFFENDER]["scam"] = await say(client, crowd[OFFENDER], f"room:{ROOM}", {"text": SCAM})
        await say(client, crowd[OFFENDER], f"room:{ROOM}", {"text": f"diamonds {WORD}"})
        for i in range(11):
            await say(client, crowd["bob"], f"room:{ROOM}", {"text": f"tip {i}: diamonds hide below level 16"})
            await say(client, crowd["alice"], f"room:{ROOM}", {"text": f"note {i}: diamonds are worth trading"})
    await make_moderator(web, "modesty")
    return crowd


async def measure(page: Any, name: str, *, phone: bool, found: list[str], controls: str = CONTROLS) -> None:
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(MEASURE, {"phone": phone, "chat": False})
    issues += await page.evaluate(TARGETS, controls)
    issues += await page.evaluate(TOP_SEARCH)
    await screenshot(page, f"searchmod-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


async def measure_dialog(page: Any, name: str, found: list[str]) -> None:
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(DIALOG_TARGETS, ".member-row button, .member-mod button, .mod-form select, "
                                                 ".mod-form textarea, .slow-form select, .slow-form button")
    await screenshot(page, f"searchmod-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


def clean(page: Any, *, allowed: tuple[tuple[int, str, str], ...] = ()) -> dict[str, list[str]]:
    """What went wrong in the page, less the refusals the test asked for ((status, method, path
    fragment) answers and the console line the browser logs for each)."""
    found = problems(page)
    expected = [r for r in found["status"]
                if any(r.startswith(f"{status} {method} ") and path in r for status, method, path in allowed)]
    found["status"] = [r for r in found["status"] if r not in expected]
    for status, _, _ in allowed:
        lines = [c for c in found["console"] if f"status of {status}" in c]
        for line in lines[:sum(r.startswith(f"{status} ") for r in expected)]:
            found["console"].remove(line)
    return {kind: items for kind, items in found.items() if items}


def asked(page: Any, fragment: str) -> int:
    return sum(1 for r in page.requests if r.startswith("GET ") and fragment in r)


async def test_search_reports_and_the_moderation_queue_live(browser: Any, web: AppServer) -> None:
    crowd = await seed(web)
    layout: list[str] = []
    modesty = await new_page(browser, web.base_url, username="modesty", viewport=DESKTOP)
    bob = await new_page(browser, web.base_url, username="bob", viewport=PHONE_360)
    offender = await new_page(browser, web.base_url, username=OFFENDER, viewport=PHONE_360)

    # The moderator: the tab bar has Moderation (members' has not); the queue is empty.
    await modesty.goto("/rooms")
    await connected(modesty)
    await modesty.locator('#nav a[data-nav="moderation"]').click()
    await modesty.wait_for_url("**/moderation")
    await modesty.get_by_text("No open reports.").wait_for()
    await modesty.evaluate("window.__sameDocument = true")
    queue_asked = asked(modesty, "/api/admin/reports")

    await offender.goto(f"/rooms/{ROOM}")
    await connected(offender)
    assert await offender.locator('#nav a[data-nav="moderation"]').count() == 0

    # Bob searches from the top bar: one request, sent once he pauses.
    await bob.goto("/rooms")
    await connected(bob)
    await bob.locator("#top-search").click()
    await bob.wait_for_url("**/search")
    box = bob.get_by_role("searchbox", name="Search")
    await bob.locator("#search-panel", has_text="Type a word").wait_for()
    assert await eventually(lambda: box.evaluate("(el) => document.activeElement === el"))  # ready to type
    await box.press_sequentially("diamonds", delay=60)
    hits = bob.locator("#search-results > li.hit-row")
    await hits.nth(19).wait_for()
    assert asked(bob, "/api/search?") == 1, [r for r in bob.requests if "/api/search" in r]
    assert bob.url.endswith("/search?q=diamonds")
    assert await hits.count() == 20
    marks = await bob.locator("#search-results mark").all_inner_texts()
    assert marks and all(m.lower() == "diamonds" for m in marks), marks
    first = hits.first
    assert await first.locator(".hit-where").inner_text() == f"# {ROOM}"
    assert await first.locator("time").inner_text() == "just now"
    await bob.get_by_role("button", name="Load more").click()
    await hits.nth(23).wait_for()
    await bob.get_by_role("button", name="Load more").wait_for(state="hidden")
    assert await hits.count() == 24  # 22 tips and notes, the scam and the long word
    assert await bob.locator("#search-results > li.hit-row", has_text=WORD).count() == 1
    await measure(bob, "search-messages-360", phone=True, found=layout)

    # Too long: the server's 422 shows next to the box.
    await box.fill("x" * 201)
    error = bob.locator("#search-error")
    await error.wait_for()
    assert "200" in await error.inner_text(), await error.inner_text()
    assert await box.get_attribute("aria-invalid") == "true"

    # Bob reports the scam from its search result.
    await box.fill("cheap")
    scam = bob.locator("#search-results > li.hit-row", has_text="cheap")
    await scam.wait_for()
    await error.wait_for(state="hidden")
    assert await hits.count() == 1
    assert await scam.locator("mark").inner_text() == "cheap"
    await scam.get_by_role("button", name=f"Report message from {OFFENDER}").click()
    await scam.get_by_label(f"Why should moderators look at this message from {OFFENDER}?").fill("Scam: pay first")
    await measure(bob, "search-report-360", phone=True, found=layout)
    await scam.get_by_role("button", name="Send report").click()
    await scam.get_by_text("Reported. Moderators will take a look.").wait_for()

    # The moderator's queue gets it live: no reload, the queue not asked again.
    report = modesty.locator("li.report", has_text=SCAM)
    await report.wait_for()
    await report.get_by_text("Scam: pay first").wait_for()
    await report.get_by_text("bob").first.wait_for()
    await modesty.locator("#reports-count", has_text="1").wait_for()
    assert await modesty.evaluate("window.__sameDocument === true")
    assert asked(modesty, "/api/admin/reports") == queue_asked

    # A result opens the conversation at the message.
    await scam.locator("a.hit").click()
    await bob.wait_for_url(f"**/rooms/{ROOM}#m{crowd[OFFENDER]['scam']}")
    await bob.locator(".msg.highlight", has_text=SCAM).wait_for()

    # Back: the same search again. Members: the offender, whose profile opens; bob reports them.
    await bob.go_back()
    await scam.wait_for()
    await bob.get_by_role("tab", name="Members").click()
    await bob.get_by_text("No members match “cheap”.").wait_for()
    await box.fill("mall")
    person = bob.locator(f'#search-results li.person-row[data-user="{OFFENDER}"]')
    await person.wait_for()
    assert bob.url.endswith("/search?q=mall&type=users")
    await measure(bob, "search-members-360", phone=True, found=layout)
    await person.locator("a.person").click()
    await bob.wait_for_url(f"**/u/{OFFENDER}")
    profile = bob.locator("section.profile")
    assert await profile.get_by_role("button", name="Mute").count() == 0  # not staff
    await profile.get_by_role("button", name="Report").click()
    await profile.get_by_label(f"Why should moderators look at {OFFENDER}?").fill("Spams every room")
    await measure(bob, "profile-report-360", phone=True, found=layout)
    await profile.get_by_role("button", name="Send report").click()
    await profile.get_by_text("Reported. Moderators will take a look.").wait_for()

    member_report = modesty.locator("li.report", has_text="Spams every room")
    await member_report.wait_for()
    await modesty.locator("#reports-count", has_text="2").wait_for()
    assert [await r.get_attribute("data-report") for r in await modesty.locator("li.report").all()] == ["2", "1"]
    assert "null" not in await modesty.locator("#main").inner_text()

    # Mute from the message report, asked once more: 10 minutes in #den.
    await report.locator("button", has_text="Mute").click()
    form = report.locator("form.mod-form")
    assert await form.get_by_label("How long").input_value() == "10"
    await measure(modesty, "moderation-mute-desktop", phone=False, found=layout)
    await modesty.set_viewport_size(PHONE_360)
    await measure(modesty, "moderation-mute-360", phone=True, found=layout)
    await modesty.set_viewport_size(DESKTOP)
    await form.get_by_role("button", name=f"Mute {OFFENDER} for 10 minutes").click()
    await report.wait_for(state="detached")
    await modesty.locator("#reports-count", has_text="1").wait_for()

    # The offender, in the room on their phone, is told.
    notice = offender.locator("#sanctions .banner.sanction")
    await notice.wait_for()
    text = await notice.inner_text()
    assert text.startswith(f"You are muted in # {ROOM} until "), text
    assert "Scam: pay first" in text, text  # the report's reason, as no other was given
    await offender.reload()  # kept on the device until it runs out or is lifted
    await connected(offender)
    await notice.wait_for()
    await offender.locator("form.composer").wait_for()  # the conversation has mounted after the reload
    found = await offender.evaluate(MEASURE, {"phone": True, "chat": True})
    found += await offender.evaluate(TARGETS, "#sanctions button")
    layout.extend(f"muted-notice-360: {p}" for p in found)
    await screenshot(offender, "searchmod-muted-notice-360")

    # Resolved: there, as "Muted".
    await modesty.get_by_role("tab", name="Resolved").click()
    done = modesty.locator("li.report.resolved", has_text=SCAM)
    await done.get_by_text("Muted").wait_for()
    assert modesty.url.endswith("/moderation?tab=resolved")
    await measure(modesty, "moderation-resolved-desktop", phone=False, found=layout)

    # The member report is dismissed (asked once more); the queue is empty again.
    await modesty.get_by_role("tab", name="Open").click()
    await member_report.locator("button", has_text="Dismiss").click()
    await member_report.get_by_role("button", name="Dismiss report").click()
    await member_report.wait_for(state="detached")
    await modesty.get_by_text("No open reports.").wait_for()
    await modesty.locator("#reports-count").wait_for(state="hidden")

    # Sanctions in force: the mute, lifted; the offender's notice goes.
    await modesty.get_by_role("tab", name="Sanctions").click()
    mute = modesty.locator("li.sanction-item", has_text=OFFENDER)
    await mute.get_by_text("Muted").wait_for()
    assert "null" not in await mute.inner_text()
    await modesty.set_viewport_size(PHONE_360)
    await measure(modesty, "moderation-sanctions-360", phone=True, found=layout)
    await modesty.set_viewport_size(DESKTOP)
    await mute.get_by_role("button", name=f"Lift {OFFENDER}'s mute").click()
    await mute.get_by_role("button", name="Lift mute").click()
    await mute.wait_for(state="detached")
    await notice.wait_for(state="detached")
    await offender.get_by_text(f"You are no longer muted in # {ROOM}.").wait_for()
    assert (await server_json(modesty, "/api/moderation/sanctions"))["sanctions"] == []

    # The moderator's view of a profile: site-wide Mute and Ban (Ban can be permanent).
    await open_in_app(modesty, f"/u/{OFFENDER}")
    staff_profile = modesty.locator(f'section.profile[data-user="{OFFENDER}"]')
    await staff_profile.get_by_role("button", name="Mute").wait_for()
    await staff_profile.get_by_role("button", name="Ban").click()
    ban = staff_profile.locator("form.mod-form")
    await ban.get_by_label("How long").select_option(label="Permanently")
    await ban.get_by_role("button", name=f"Ban {OFFENDER} permanently").wait_for()
    await modesty.set_viewport_size(PHONE_360)
    await measure(modesty, "profile-ban-360", phone=True, found=layout)
    await modesty.set_viewport_size(DESKTOP)
    await ban.get_by_role("button", name="Cancel").click()
    await staff_profile.get_by_role("button", name="Ban").wait_for()

    # Search on the desktop, too.
    await open_in_app(modesty, "/search?q=diamonds")
    await modesty.locator("#search-results > li.hit-row").nth(19).wait_for()
    await measure(modesty, "search-desktop", phone=False, found=layout)
    await modesty.set_viewport_size(WIDE)
    await measure(modesty, "search-1366", phone=False, found=layout)

    assert not layout, "\n".join(layout)
    assert clean(bob, allowed=((422, "GET", "/api/search?q=xxxx"),)) == {}
    assert clean(modesty) == {}
    assert clean(offender) == {}


async def test_room_owner_kicks_sets_slow_mode_and_appoints(browser: Any, web: AppServer) -> None:
    await seed(web)
    layout: list[str] = []
    alice = await new_page(browser, web.base_url, username="alice", viewport=DESKTOP)
    bob = await new_page(browser, web.base_url, username="bob", viewport=PHONE_360)
    offender = await new_page(browser, web.base_url, username=OFFENDER, viewport=PHONE_360)
    for page in (alice, offender):
        await page.goto(f"/rooms/{ROOM}")
        await connected(page)

    # The owner's room panel: slow mode, and each member's tools.
    await alice.get_by_role("button", name=f"Room info: # {ROOM}").click()
    panel = alice.locator("dialog.room-info")
    await panel.get_by_label("Slow mode").select_option(label="30 s")
    await panel.get_by_role("button", name="Set slow mode").click()
    await panel.locator(".slow-state", has_text="one message every 30 s").wait_for()
    assert (await server_json(alice, f"/api/rooms/{ROOM}"))["slow_mode"] == 30
    bob_row = panel.locator('li.member-row[data-username="bob"]')
    await bob_row.get_by_role("button", name="Manage bob").click()
    await bob_row.get_by_role("button", name="Make moderator").click()
    await panel.locator('li.member-row[data-username="bob"] .badge', has_text="moderator").wait_for()
    assert await panel.locator('li.member-row[data-username="alice"] button').count() == 0  # herself

    # Bob, now a room moderator: tools for the offender, none for the owner.
    await bob.goto(f"/rooms/{ROOM}")
    await connected(bob)
    await bob.get_by_role("button", name=f"Room info: # {ROOM}").click()
    bob_panel = bob.locator("dialog.room-info")
    target = bob_panel.locator(f'li.member-row[data-username="{OFFENDER}"]')
    await target.get_by_role("button", name=f"Manage {OFFENDER}").click()
    assert await bob_panel.locator('li.member-row[data-username="alice"] button').count() == 0
    assert await target.get_by_role("button", name="Make moderator").count() == 0  # the owner's call
    await measure_dialog(bob, "room-panel-tools-360", layout)
    await target.get_by_role("button", name="Kick").click()
    kick = target.locator("form.mod-form")
    await kick.get_by_label("Reason").fill("Spamming the room")
    await measure_dialog(bob, "room-panel-kick-360", layout)

    # Meanwhile the owner takes the role back: the server refuses bob's kick, and says so.
    await alice.get_by_role("button", name="Manage bob").click()
    await alice.get_by_role("button", name="Remove moderator").click()
    await panel.locator('li.member-row[data-username="bob"] .badge').wait_for(state="detached")
    await kick.get_by_role("button", name=f"Kick {OFFENDER}").click()
    await kick.locator(".error", has_text="You cannot moderate this member here.").wait_for()
    await bob_panel.get_by_role("button", name="Close").click()

    # The owner kicks the offender, who sees it in the room.
    target = panel.locator(f'li.member-row[data-username="{OFFENDER}"]')
    await target.get_by_role("button", name=f"Manage {OFFENDER}").click()
    await target.get_by_role("button", name="Kick").click()
    await target.get_by_label("Reason").fill("Spamming the room")
    await measure_dialog(alice, "room-panel-kick-desktop", layout)
    await target.get_by_role("button", name=f"Kick {OFFENDER}").click()
    await target.wait_for(state="detached")
    await alice.get_by_text(f"{OFFENDER} was kicked from # {ROOM}.").wait_for()
    await offender.get_by_text("You were removed from this room").wait_for()
    members = (await server_json(alice, f"/api/rooms/{ROOM}/members"))["members"]
    assert OFFENDER not in [m["username"] for m in members]

    assert not layout, "\n".join(layout)
    assert clean(alice) == {}
    assert clean(bob, allowed=((403, "POST", f"/api/rooms/{ROOM}/kick"),)) == {}
    assert clean(offender) == {}
