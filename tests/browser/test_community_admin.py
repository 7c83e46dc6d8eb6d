"""Managing the community from the PWA: forum categories (admins), pinning and locking threads and
reading edit histories (moderators), editing an event (its author).

Members in separate browser contexts, one on a 360x740 phone and one on a desktop:

- categories: an admin on her phone creates a category from the forum screen — the server's
  refusals (a position out of range, a name taken) appear under their fields with her text kept —
  edits it in a panel (the member, after navigating, may read but not post there), cannot delete a
  category with threads (a clear message in the panel) and deletes the empty one;
- threads: the author edits her reply (the moderator's screen marks it edited, live) and the
  moderator opens its edit history in a panel and reads the replaced text; the moderator pins and
  locks the thread and the member reading it sees the badge and loses the reply form, live;
- events: the author edits her event's time in a panel (a server refusal under "Ends" first), the
  other member's screen shows the new time live in his own time zone, then she deletes it and his
  screen says so.

Each new panel is measured at 360 px (nothing scrolls sideways, every control at least 40 px tall
and reachable by a tap), the screens at both widths; every page ends with no page errors, console
errors or failed requests, and no 4xx/5xx but the refusals the test asked for.
"""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import DESKTOP, connected, new_page, screenshot, server_json
from tests.browser.test_community import PHONE_360, live_ready, measure, open_tab
from tests.browser.test_layout import MEASURE
from tests.browser.test_people import clean
from tests.browser.test_search_moderation import DIALOG_TARGETS, make_moderator
from tests.support.accounts import make_admin
from tests.support.appserver import AppServer
from tests.support.community import people

DIALOG_CONTROLS = "button, input, textarea, select"


async def measure_dialog(page: Any, name: str, *, phone: bool, found: list[str]) -> None:
    """The open panel: the page does not scroll sideways (MEASURE), the panel is on screen and its
    controls are 40 px targets a tap reaches inside it (the panel is modal, above the bars)."""
    await page.locator("dialog[open]").wait_for()
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(MEASURE, {"phone": phone, "chat": False})
    issues += await page.evaluate(DIALOG_TARGETS, DIALOG_CONTROLS)
    await screenshot(page, f"community-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


def verdict(layout: list[str], *pages: tuple[Any, tuple[tuple[int, str, str], ...]]) -> None:
    """The layout problems and what went wrong in each page, less the refusals each one asked for."""
    found = [clean(page, allowed=allowed) for page, allowed in pages]
    assert not layout and not any(found), "\n".join([*layout, *map(str, found)])


async def test_admin_manages_forum_categories(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        u = await people(client, "root", "alice")
        await make_admin(web, "root")
        general = next(c for c in (await client.get("/api/forum/categories", headers=u["alice"]["headers"])).json()[
            "categories"] if c["name"] == "General")
        response = await client.post(f"/api/forum/categories/{general['id']}/threads", headers=u["alice"]["headers"],
                                     json={"title": "Hello", "body": "First!"})
        assert response.status_code == 201, response.text
    layout: list[str] = []
    root = await new_page(browser, web.base_url, username="root", viewport=PHONE_360)
    alice = await new_page(browser, web.base_url, username="alice", viewport=DESKTOP)

    # Alice reads the forum: no "New category" for a member.
    await alice.goto("/forum")
    await connected(alice)
    await alice.locator("a.item[data-category]", has_text="General").wait_for()
    assert await alice.locator("summary", has_text="New category").count() == 0
    assert await alice.locator(".category-manage").count() == 0

    # The admin, on her phone: the form, refused by the server field by field, her text kept.
    await root.goto("/rooms")
    await connected(root)
    await open_tab(root, "/forum")
    await live_ready(root)
    await root.locator("summary", has_text="New category").click()
    form = root.locator("form.category-form")
    await form.get_by_label("Name").fill("Redstone lab")
    await form.get_by_label("Description").fill("Clocks, doors, computers.")
    await form.get_by_label("Position").fill("2000000")
    await form.get_by_label("Who can read it").select_option("members")
    await form.get_by_role("button", name="Create category").click()
    position_error = form.locator('[data-field="position"] .field-error')
    await position_error.wait_for()
    assert await position_error.inner_text() == "A position is a whole number from 0 to 1,000,000."
    assert await form.get_by_label("Name").input_value() == "Redstone lab"
    assert await form.get_by_label("Position").input_value() == "2000000"
    await measure(root, "category-form-refused-360", phone=True, found=layout)

    await form.get_by_label("Position").fill("")
    await form.get_by_label("Name").fill("general")
    await form.get_by_role("button", name="Create category").click()
    name_error = form.locator('[data-field="name"] .field-error')
    await name_error.wait_for()
    assert "exists" in await name_error.inner_text()
    assert await position_error.is_hidden()
    assert await form.get_by_label("Description").input_value() == "Clocks, doors, computers."

    await form.get_by_label("Name").fill("Redstone lab")
    await form.get_by_role("button", name="Create category").click()
    created = root.locator("a.item[data-category]", has_text="Redstone lab")
    await created.wait_for()
    await created.locator(".sub", has_text="Clocks, doors, computers.").wait_for()
    stored = {c["name"]: c for c in (await server_json(root, "/api/forum/categories"))["categories"]}
    lab = stored["Redstone lab"]
    assert (lab["view"], lab["post"], lab["position"]) == ("members", "members", general["position"] + 1)
    await measure(root, "forum-admin-360", phone=True, found=layout)

    # Alice finds it once she comes back to the forum.
    await open_tab(alice, "/forum")
    await alice.locator("a.item[data-category]", has_text="Redstone lab").wait_for()

    # The admin makes it a place where only moderators post (a panel: measured at 360 px).
    await root.get_by_role("button", name="Edit category Redstone lab").click()
    dialog = root.locator("dialog[open]")
    assert await dialog.get_by_label("Name").input_value() == "Redstone lab"
    await dialog.get_by_label("Who can post").select_option("moderator")
    await dialog.get_by_label("Description").fill("Clocks, doors and computers: read-only.")
    await measure_dialog(root, "category-panel-360", phone=True, found=layout)
    await dialog.get_by_role("button", name="Save category").click()
    await dialog.wait_for(state="detached")
    await root.locator("a.item[data-category] .sub", has_text="read-only").wait_for()
    lab = next(c for c in (await server_json(root, "/api/forum/categories"))["categories"] if c["id"] == lab["id"])
    assert (lab["post"], lab["description"]) == ("moderator", "Clocks, doors and computers: read-only.")

    await alice.locator("a.item[data-category]", has_text="Redstone lab").click()
    await alice.get_by_role("heading", name="Redstone lab", level=1).wait_for()
    await alice.get_by_text("Only some members may start threads here.").wait_for()
    assert await alice.locator("summary", has_text="New thread").count() == 0

    # General has a thread: it stays, and the panel says why.
    await root.get_by_role("button", name="Edit category General").click()
    await dialog.get_by_role("button", name="Delete category").click()
    await dialog.get_by_role("button", name="Delete category").click()  # the confirmation
    refusal = dialog.locator(".danger-zone .error")
    await refusal.wait_for()
    assert "still has threads" in await refusal.inner_text()
    await measure_dialog(root, "category-delete-refused-360", phone=True, found=layout)
    await dialog.get_by_role("button", name="Close").click()
    await dialog.wait_for(state="detached")

    # The empty one goes.
    await root.get_by_role("button", name="Edit category Redstone lab").click()
    await dialog.get_by_role("button", name="Delete category").click()
    await dialog.get_by_role("button", name="Delete category").click()
    await dialog.wait_for(state="detached")
    await root.locator("a.item[data-category]", has_text="Redstone lab").wait_for(state="detached")
    assert [c["name"] for c in (await server_json(alice, "/api/forum/categories"))["categories"]] == ["General"]
    await open_tab(alice, "/forum")
    await alice.locator("a.item[data-category]", has_text="General").wait_for()
    assert await alice.locator("a.item[data-category]", has_text="Redstone lab").count() == 0
    await measure(alice, "forum-desktop-after", phone=False, found=layout)

    verdict(layout, (alice, ()), (root, (
        (422, "POST", "/api/admin/forum/categories"), (409, "POST", "/api/admin/forum/categories"),
        (409, "DELETE", f"/api/admin/forum/categories/{general['id']}"))))


async def test_moderator_pins_locks_and_reads_the_edit_history(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        u = await people(client, "mod", "alice", "bob")
        await make_moderator(web, "mod")
        general = (await client.get("/api/forum/categories", headers=u["alice"]["headers"])).json()["categories"][0]
        thread = (await client.post(f"/api/forum/categories/{general['id']}/threads", headers=u["alice"]["headers"],
                                    json={"title": "Trading hall layout", "body": "Villagers in **pods**?"})).json()
        reply = (await client.post(f"/api/forum/threads/{thread['id']}/replies", headers=u["alice"]["headers"],
                                   json={"body": "Iron golem farm on top."})).json()
    layout: list[str] = []
    path = f"/forum/t/{thread['id']}"
    alice = await new_page(browser, web.base_url, username="alice", viewport=DESKTOP)
    mod = await new_page(browser, web.base_url, username="mod", viewport=PHONE_360)
    bob = await new_page(browser, web.base_url, username="bob", viewport=PHONE_360)
    for page in (alice, mod, bob):
        await page.goto(path)
        await connected(page)
        await page.locator(f'li.reply[data-reply="{reply["id"]}"]').wait_for()
        await live_ready(page)
    await bob.evaluate("window.__sameDocument = true")

    # Alice edits her reply: the moderator's screen marks it edited (live) and its history has the old text.
    mine = alice.locator(f'li.reply[data-reply="{reply["id"]}"]')
    await mine.get_by_role("button", name="Edit").click()
    await mine.get_by_label("Edit your reply").fill("Iron golem farm **underneath**.")
    await mine.get_by_role("button", name="Save").click()
    await mine.locator(".md strong", has_text="underneath").wait_for()

    theirs = mod.locator(f'li.reply[data-reply="{reply["id"]}"]')
    await theirs.locator(".md strong", has_text="underneath").wait_for()
    await theirs.get_by_role("button", name="Edited: show the edit history").click()
    history = mod.locator("dialog[open]")
    await history.get_by_role("heading", name="Reply edit history").wait_for()
    old = history.locator("li.edit-version")
    await old.wait_for()
    assert await old.count() == 1
    assert "Iron golem farm on top." in await old.locator(".md").inner_text()
    assert "by alice" in await old.locator(".edit-when").inner_text()
    await measure_dialog(mod, "edit-history-360", phone=True, found=layout)
    await history.get_by_role("button", name="Close").click()
    await history.wait_for(state="detached")

    # The author sees it too; bob, neither author nor moderator, gets the mark only.
    await mine.get_by_role("button", name="Edited: show the edit history").click()
    await alice.locator("dialog[open] li.edit-version", has_text="Iron golem farm on top.").wait_for()
    await measure_dialog(alice, "edit-history-desktop", phone=False, found=layout)
    await alice.keyboard.press("Escape")
    await alice.locator("dialog").wait_for(state="detached")
    bobs = bob.locator(f'li.reply[data-reply="{reply["id"]}"]')
    await bobs.locator("span.edited").wait_for()
    assert await bobs.locator("button.edited").count() == 0

    # The moderator pins and locks: bob, reading the thread, sees both and the reply form goes, live.
    await mod.get_by_role("button", name="Pin", exact=True).click()
    await bob.locator(".thread-main .badge.pin").wait_for()
    assert await bob.get_by_label("Your reply").is_visible()
    await mod.get_by_role("button", name="Lock", exact=True).click()
    await bob.locator(".thread-main .badge.lock").wait_for()
    await bob.locator("form.reply-form").wait_for(state="hidden")
    await bob.get_by_text("This thread is locked: no new replies.").wait_for()
    await alice.locator("form.reply-form").wait_for(state="hidden")
    # The moderator may still reply (the server lets site moderators).
    await mod.get_by_text("This thread is locked: only moderators may reply.").wait_for()
    assert await mod.get_by_label("Your reply").is_visible()
    await mod.get_by_role("button", name="Unlock", exact=True).wait_for()
    await measure(mod, "thread-moderator-360", phone=True, found=layout)
    await measure(bob, "thread-locked-360", phone=True, found=layout)
    assert await bob.evaluate("window.__sameDocument === true")

    stored = (await server_json(bob, path.replace("/forum/t/", "/api/forum/threads/")))["thread"]
    assert (stored["pinned"], stored["locked"]) == (True, True)
    threads = (await server_json(bob, f"/api/forum/categories/{general['id']}/threads"))["items"]
    assert threads[0]["id"] == thread["id"] and threads[0]["pinned"]
    verdict(layout, (alice, ()), (mod, ()), (bob, ()))


async def test_event_author_edits_the_time_live(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        u = await people(client, "alice", "bob")
        created = await client.post("/api/events", headers=u["alice"]["headers"], json={
            "title": "Build night at spawn", "starts_at": "2030-06-01T19:00:00+09:00",
            "ends_at": "2030-06-01T21:30:00+09:00", "timezone": "Asia/Tokyo",
            "place": {"kind": "text", "text": "Spawn"}})
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]
    layout: list[str] = []
    alice = await new_page(browser, web.base_url, username="alice", viewport=PHONE_360, timezone_id="Asia/Tokyo",
                           locale="en-GB")
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP, timezone_id="America/New_York",
                         locale="en-GB")

    await bob.goto("/rooms")
    await connected(bob)
    await open_tab(bob, "/events")
    await bob.locator("li[data-event] a.item", has_text="Build night").click()
    await live_ready(bob)
    when_bob = bob.locator(".event .event-when")
    assert "06:00" in await when_bob.inner_text()
    assert await bob.get_by_role("button", name="Edit event").count() == 0  # not his

    await alice.goto(f"/events/{event_id}")
    await connected(alice)
    await live_ready(alice)
    await alice.get_by_role("button", name="Edit event").click()
    dialog = alice.locator("dialog[open]")
    starts, ends = dialog.get_by_label("Starts"), dialog.get_by_label("Ends")
    assert await starts.input_value() == "2030-06-01T19:00"
    assert await dialog.get_by_label("Where").input_value() == "Spawn"
    await measure_dialog(alice, "event-panel-360", phone=True, found=layout)

    # Ending before it starts: the server's reason under "Ends", the typed times kept.
    await starts.fill("2030-06-01T20:00")
    await ends.fill("2030-06-01T18:00")
    await dialog.get_by_role("button", name="Save changes").click()
    ends_error = dialog.locator('[data-field="ends_at"] .field-error')
    await ends_error.wait_for()
    assert await ends_error.inner_text() == "The event must end after it starts."
    assert (await starts.input_value(), await ends.input_value()) == ("2030-06-01T20:00", "2030-06-01T18:00")
    await measure_dialog(alice, "event-panel-refused-360", phone=True, found=layout)

    await ends.fill("2030-06-01T22:30")
    await dialog.get_by_role("button", name="Save changes").click()
    await dialog.wait_for(state="detached")
    when_alice = alice.locator(".event .event-when")
    assert "20:00" in await when_alice.inner_text() and "22:30" in await when_alice.inner_text()

    # Bob's screen follows, in New York time (UTC-4 in June), without a reload.
    await bob.locator(".event .event-when", has_text="07:00").wait_for()
    assert "09:30" in await when_bob.inner_text()
    await bob.locator(".organiser-time", has_text="20:00").wait_for()
    stored = await server_json(bob, f"/api/events/{event_id}")
    assert stored["starts_at"].startswith("2030-06-01T11:00:00") and stored["ends_at"].startswith("2030-06-01T13:30:00")
    assert stored["place"] == {"kind": "text", "text": "Spawn"} and stored["title"] == "Build night at spawn"
    await measure(alice, "event-edited-360", phone=True, found=layout)
    await measure(bob, "event-edited-desktop", phone=False, found=layout)

    # She cancels it: his screen says so.
    await alice.get_by_role("button", name="Delete event").click()
    await alice.get_by_role("button", name="Delete event").click()  # the confirmation
    await alice.wait_for_url("**/events")
    await bob.get_by_role("heading", name="Event cancelled").wait_for()

    verdict(layout, (alice, ((422, "PATCH", f"/api/events/{event_id}"),)), (bob, ()))
