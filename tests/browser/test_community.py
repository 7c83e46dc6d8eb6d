"""Issue 17, the client: the community screens of the PWA (home, forum, feed, groups, events,
leaderboard), live over the app's one websocket.

Two members in two browser contexts, one on a 360x740 phone and one on a desktop, each in its own
time zone:

- feed: alice writes a post with a picture from her phone; bob, reading the feed, gets a "1 new
  post" bar instead of the post pushed under his finger, and a tap shows it; bob's like and comment
  change alice's counts live; the post's own page opens as a deep link;
- forum: alice starts a thread from the category screen (bob's category list counts it live); bob
  opens it and sees alice's reply arrive and her edit, without a reload; his connection drops while
  alice replies again, and on reconnecting the reply comes from the stream's recovery (`since`);
  his vote reaches alice's screen live;
- events: alice (Tokyo) plans an event with the form's local date and time; the server stores it
  as UTC; bob (New York) sees it in his own time, and alice sees bob's RSVP count go up live;
- groups: bob starts a group, alice joins (bob sees the member count change live) and posts in it
  (bob gets the "new post" bar on the group's page);
- home and leaderboard show what is new.

Every community screen is measured at 360 px and at a desktop width (test_layout's MEASURE and
test_people's tap targets): nothing scrolls sideways, nothing sits under the tab bar, every control
is at least 40 px tall. Every page ends with zero page errors, console errors, failed requests and
4xx/5xx answers. Screenshots: artifacts/screenshots/community-*.
"""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import DESKTOP, connected, new_page, problems, screenshot, server_json
from tests.browser.test_layout import MEASURE
from tests.browser.test_people import CONTROLS, TARGETS, png
from tests.support.appserver import AppServer
from tests.support.community import people

PHONE_360 = {"width": 360, "height": 740}
COMMUNITY_CONTROLS = (CONTROLS + ", #main .subnav a, #main .vote, #main a.thread-title, #main .byline a.who, "
                      "#main .new-bar")


async def measure(page: Any, name: str, *, phone: bool, found: list[str]) -> None:
    """Geometry of the screen as it is (no sideways scrolling, nothing under a bar, 40 px targets)."""
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(MEASURE, {"phone": phone, "chat": False})
    issues += await page.evaluate(TARGETS, COMMUNITY_CONTROLS)
    await screenshot(page, f"community-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


def finish(layout: list[str], *pages: Any) -> None:
    """Both verdicts at once: the layout problems and what went wrong in each page."""
    found = [problems(page) for page in pages]
    assert not layout and not any(any(f.values()) for f in found), "\n".join([*layout, *map(str, found)])


async def live_ready(page: Any) -> None:
    """The screen follows its streams (subscribed on this connection, its HTTP read done)."""
    await page.locator('#main > section[data-live="ready"]').wait_for()


async def open_tab(page: Any, href: str) -> None:
    """Through the app: the tab bar's Community tab, then the section link."""
    await page.locator('#nav a[data-nav="community"]').click()
    await page.get_by_role("heading", name="Community", level=1).wait_for()
    if href != "/community":
        await page.locator(f'#main .subnav a[href="{href}"]').click()
        await page.wait_for_url(f"**{href}")


async def test_feed_new_posts_bar_and_live_likes(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        await people(client, "alice", "bob")
    layout: list[str] = []
    alice = await new_page(browser, web.base_url, username="alice", viewport=PHONE_360)
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP)

    await bob.goto("/rooms")
    await connected(bob)
    await open_tab(bob, "/feed")
    await live_ready(bob)
    await bob.get_by_text("No posts yet").wait_for()
    await bob.evaluate("window.__sameDocument = true")

    # Alice, on her phone, writes a post with a picture (previewed before it is sent).
    await alice.goto("/feed")
    await connected(alice)
    await live_ready(alice)
    await measure(alice, "feed-360", phone=True, found=layout)
    box = alice.get_by_label("Share something")
    await box.fill("Finished the nether highway! Pics below.")
    await alice.get_by_label("Picture (optional)").set_input_files(
        files=[{"name": "highway.png", "mimeType": "image/png", "buffer": png(64)}])
    await alice.locator(".image-preview img").wait_for()
    await alice.get_by_role("button", name="Post", exact=True).click()
    mine = alice.locator("article.post", has_text="Finished the nether highway")
    await mine.wait_for()
    await mine.locator("img.post-image").wait_for()
    assert await box.input_value() == ""
    await measure(alice, "feed-posted-360", phone=True, found=layout)

    # Bob: a bar, not a post pushed under his finger; a tap shows it.
    bar = bob.locator(".new-bar")
    await bar.wait_for()
    assert (await bar.inner_text()).startswith("1 new post")
    assert await bob.locator("article.post").count() == 0
    await measure(bob, "feed-bar-desktop", phone=False, found=layout)
    await bar.click()
    theirs = bob.locator("article.post", has_text="Finished the nether highway")
    await theirs.wait_for()
    await bar.wait_for(state="hidden")
    assert await theirs.locator("img.post-image").count() == 1
    assert await theirs.locator(".byline a.who").inner_text() == "alice"
    assert await theirs.locator(".level-chip").count() == 1

    # Bob likes it and comments: alice's counts follow live.
    await theirs.get_by_role("button", name="Like post").click()
    await theirs.locator('button.like[aria-pressed="true"][data-likes="1"]').wait_for()
    await mine.locator('button.like[data-likes="1"]').wait_for()
    await theirs.get_by_role("button", name="Comments").click()
    await theirs.get_by_label("Comment", exact=True).fill("Looks amazing")
    await theirs.get_by_role("button", name="Comment", exact=True).click()
    await theirs.locator(".comment", has_text="Looks amazing").wait_for()
    await mine.locator('button[data-comments="1"]').wait_for()
    await mine.get_by_role("button", name="Comments").click()
    await mine.locator(".comment", has_text="Looks amazing").wait_for()

    # A page load straight onto the feed: the socket is still connecting as the screen reads, which
    # waits for the subscription first, so no gap is suspected (no bar with nothing new behind it).
    await alice.goto("/feed")
    await live_ready(alice)
    await mine.wait_for()
    await alice.wait_for_timeout(300)
    assert await alice.locator(".new-bar").is_hidden()
    assert sum(r.startswith("GET ") and "/api/posts?feed=everyone" in r for r in alice.requests) == 2  # one per load

    # Too long: refused beside the field by the counter, the text kept.
    await box.fill("x" * 2001)
    await alice.locator(".field-count.error", has_text="2,001 / 2,000").wait_for()
    await alice.get_by_role("button", name="Post", exact=True).click()
    assert await box.input_value() == "x" * 2001
    await box.fill("")

    assert await bob.evaluate("window.__sameDocument === true")  # all without a reload
    stored = (await server_json(bob, "/api/posts?feed=everyone"))["items"]
    # A post's own page is a deep link (the app shell answers it), its comments open.
    await bob.goto(f"/posts/{stored[0]['id']}")
    await bob.locator("article.post .comment", has_text="Looks amazing").wait_for()
    await live_ready(bob)
    assert [(p["content"], p["likes"], p["comments"]) for p in stored] == [
        ("Finished the nether highway! Pics below.", 1, 1)]
    assert stored[0]["image"] and stored[0]["image"]["url"].startswith("/media/posts/")
    finish(layout, alice, bob)


async def test_forum_thread_live_between_two_members(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        await people(client, "alice", "bob")
    layout: list[str] = []
    alice = await new_page(browser, web.base_url, username="alice", viewport=DESKTOP)
    bob = await new_page(browser, web.base_url, username="bob", viewport=PHONE_360)

    # Bob reads the category list (live counts).
    await bob.goto("/rooms")
    await connected(bob)
    await open_tab(bob, "/forum")
    general = bob.locator("a.item[data-category]", has_text="General")
    await general.wait_for()
    await live_ready(bob)
    await measure(bob, "forum-360", phone=True, found=layout)

    # Alice starts a thread from the category screen.
    await alice.goto("/forum")
    await connected(alice)
    await alice.locator("a.item[data-category]", has_text="General").click()
    await alice.get_by_role("heading", name="General", level=1).wait_for()
    await alice.locator("summary", has_text="New thread").click()
    await alice.get_by_label("Title").fill("Nether highway: which level?")
    await alice.get_by_label("Post").fill("I say **y=120**. Thoughts, @bob?")
    await measure(alice, "category-form-desktop", phone=False, found=layout)
    await alice.get_by_role("button", name="Post thread").click()
    await alice.wait_for_url("**/forum/t/*")
    await alice.locator(".thread-main .md strong", has_text="y=120").wait_for()
    await alice.locator('.thread-main .md a[href="/u/bob"]').wait_for()  # the server's mention link
    thread_path = alice.url.split(alice.url.split("/forum/")[0])[1]

    # Bob's category list: one thread more, live.
    await bob.locator('.category-stats[data-threads="1"]').wait_for()

    # Bob opens the thread (the category, then the thread) and waits on it.
    await general.click()
    await bob.locator("a.thread-title", has_text="Nether highway").click()
    await bob.wait_for_url(f"**{thread_path}")
    await live_ready(bob)
    await bob.evaluate("window.__sameDocument = true")
    await bob.get_by_text("No replies yet.").wait_for()

    # Alice replies: bob sees it arrive; she edits it and votes: bob sees both.
    await alice.get_by_label("Your reply").fill("Also: ice boats on the roof.")
    await alice.get_by_role("button", name="Reply", exact=True).click()
    await alice.locator("li.reply", has_text="ice boats").wait_for()
    reply_id = await alice.locator("li.reply", has_text="ice boats").get_attribute("data-reply")
    reply_alice = alice.locator(f'li.reply[data-reply="{reply_id}"]')
    reply_bob = bob.locator("li.reply", has_text="ice boats")
    await reply_bob.wait_for()
    assert await reply_bob.locator(".byline a.who").inner_text() == "alice"
    await bob.locator('.thread-stats[data-replies="1"]').wait_for()

    await reply_alice.get_by_role("button", name="Edit").click()
    await reply_alice.get_by_label("Edit your reply").fill("Also: blue ice boats on the roof.")
    await reply_alice.get_by_role("button", name="Save").click()
    await bob.locator("li.reply", has_text="blue ice boats").locator(".edited").wait_for()

    # Bob's connection drops; alice replies meanwhile: on reconnecting, bob's subscription asks from
    # where it was (`since`) and the reply arrives from the server's `missed`, still without a reload.
    await bob.context.set_offline(True)
    await bob.locator('#conn[data-state="offline"]').wait_for()
    await alice.get_by_label("Your reply").fill("Second thought: y=121 clears the bedrock roof.")
    await alice.get_by_role("button", name="Reply", exact=True).click()
    await alice.locator("li.reply", has_text="Second thought").wait_for()
    assert await bob.locator("li.reply", has_text="Second thought").count() == 0
    await bob.context.set_offline(False)
    await connected(bob)
    await bob.locator("li.reply", has_text="Second thought").wait_for()
    await bob.locator('.thread-stats[data-replies="2"]').wait_for()

    await bob.get_by_role("button", name="Upvote thread").click()
    await bob.locator('.thread-main .score[data-score="1"]').wait_for()
    await alice.locator('.thread-main .score[data-score="1"]').wait_for()
    await measure(bob, "thread-360", phone=True, found=layout)
    await measure(alice, "thread-desktop", phone=False, found=layout)

    # A reply over the limit stays in the box, with the counter's reason.
    await bob.get_by_label("Your reply").fill("y" * 5001)
    await bob.locator(".field-count.error", has_text="5,001 / 5,000").wait_for()
    await bob.get_by_role("button", name="Reply", exact=True).click()
    assert await bob.get_by_label("Your reply").input_value() == "y" * 5001

    assert await bob.evaluate("window.__sameDocument === true")
    thread_id = int(thread_path.rsplit("/", 1)[1])
    stored = await server_json(bob, f"/api/forum/threads/{thread_id}")
    assert stored["thread"]["score"] == 1 and stored["thread"]["replies"] == 2
    assert [r["html"].count("blue ice boats") for r in stored["replies"]["items"]] == [1, 0]
    finish(layout, alice, bob)


async def test_events_in_each_viewers_time_zone_and_live_rsvp(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        await people(client, "alice", "bob")
    layout: list[str] = []
    alice = await new_page(browser, web.base_url, username="alice", viewport=PHONE_360, timezone_id="Asia/Tokyo",
                           locale="en-GB")
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP, timezone_id="America/New_York",
                         locale="en-GB")

    # Alice plans an event for 19:00 on 1 June 2030, Tokyo time (UTC+9).
    await alice.goto("/events")
    await connected(alice)
    await alice.locator("summary", has_text="Plan an event").click()
    await alice.get_by_label("Title").fill("Build night at spawn")
    await alice.get_by_label("Starts").fill("2030-06-01T19:00")
    await alice.get_by_label("Ends").fill("2030-06-01T21:30")
    await alice.get_by_label("Where").fill("Spawn, by the fountain")
    await alice.get_by_text("Times are in your time zone, Asia/Tokyo.").wait_for()
    await measure(alice, "events-form-360", phone=True, found=layout)
    await alice.get_by_role("button", name="Create event").click()
    await alice.wait_for_url("**/events/*")
    event_id = int(alice.url.rsplit("/", 1)[1])
    when_alice = alice.locator(".event .event-when")
    await when_alice.wait_for()
    assert "19:00" in await when_alice.inner_text() and "21:30" in await when_alice.inner_text()
    await live_ready(alice)

    stored = await server_json(alice, f"/api/events/{event_id}")
    assert stored["starts_at"].startswith("2030-06-01T10:00:00") and stored["timezone"] == "Asia/Tokyo"

    # Bob (New York, UTC-4 in June) sees 06:00, with the organiser's own time beside it.
    await bob.goto("/rooms")
    await connected(bob)
    await open_tab(bob, "/events")
    row = bob.locator("li[data-event]", has_text="Build night at spawn")
    await row.wait_for()
    assert "06:00" in await row.locator(".event-when").inner_text()
    await measure(bob, "events-desktop", phone=False, found=layout)
    await row.locator("a.item").click()
    await live_ready(bob)
    assert "06:00" in await bob.locator(".event .event-when").inner_text()
    await bob.locator(".organiser-time", has_text="19:00").wait_for()

    # Bob is going: alice's page counts him live.
    await bob.get_by_role("button", name="Going", exact=True).click()
    await bob.locator('.rsvp button[data-status="going"][aria-pressed="true"]').wait_for()
    await alice.locator('.count-going[data-count="1"]').wait_for()
    await measure(alice, "event-360", phone=True, found=layout)
    await bob.get_by_role("button", name="Interested", exact=True).click()
    await alice.locator('.count-interested[data-count="1"]').wait_for()
    await alice.locator('.count-going[data-count="0"]').wait_for()

    finish(layout, alice, bob)


async def test_groups_home_and_leaderboard(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        await people(client, "alice", "bob")
    layout: list[str] = []
    bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP)
    alice = await new_page(browser, web.base_url, username="alice", viewport=PHONE_360)

    # Bob starts a group and stays on its page.
    await bob.goto("/groups")
    await connected(bob)
    await bob.locator("summary", has_text="Start a group").click()
    await bob.get_by_label("Name").fill("Redstone engineers")
    await bob.get_by_label("Description").fill("Clocks, doors and flying machines.")
    await bob.get_by_role("button", name="Create group").click()
    await bob.wait_for_url("**/groups/*")
    await bob.locator('.group-head .group-members[data-members="1"]').wait_for()
    await live_ready(bob)

    # Alice finds it on her phone and joins: bob's count follows live.
    await alice.goto("/rooms")
    await connected(alice)
    await open_tab(alice, "/groups")
    await alice.locator("li[data-group] a.item", has_text="Redstone engineers").click()
    await alice.get_by_role("button", name="Join", exact=True).click()
    await alice.get_by_role("link", name="Open chat room").wait_for()
    await bob.locator('.group-head .group-members[data-members="2"]').wait_for()
    await measure(alice, "group-360", phone=True, found=layout)

    # Alice posts in the group: bob, on the group's page, gets the "new post" bar.
    await alice.get_by_label("Post to the group").fill("Who has a spare sticky piston?")
    await alice.get_by_role("button", name="Post", exact=True).click()
    await alice.locator("article.post", has_text="sticky piston").wait_for()
    await bob.locator(".new-bar", has_text="1 new post").click()
    await bob.locator("article.post", has_text="sticky piston").wait_for()

    # The home screen shows what is new; the leaderboard lists members by XP.
    await open_tab(alice, "/community")
    await live_ready(alice)
    await measure(alice, "home-360", phone=True, found=layout)
    await alice.locator('#main .subnav a[href="/leaderboard"]').click()
    await alice.locator("ol.leaderboard li[data-user]").first.wait_for()
    await measure(alice, "leaderboard-360", phone=True, found=layout)
    await open_tab(bob, "/community")
    await live_ready(bob)
    await measure(bob, "home-desktop", phone=False, found=layout)

    finish(layout, alice, bob)


async def test_a_rank_shows_beside_the_senders_name_in_chat(browser: Any, web: AppServer) -> None:
    """An admin gives alice a rank: bob, reading the room on his phone, sees it beside her name on
    her next message (live) and after a reload (history), in the rank's colour."""
    from tests.support.accounts import make_admin
    from tests.support.community import say

    async with web.client() as client:
        u = await people(client, "root", "alice", "bob")
        await make_admin(web, "root")
        rank = (await client.post("/api/admin/ranks", json={"name": "Gold", "colour": "#d4a017", "badge": "G"},
                                  headers=u["root"]["headers"])).json()
        assert (await client.put("/api/admin/users/alice/rank", json={"rank_id": rank["id"]},
                                 headers=u["root"]["headers"])).status_code == 200
        bob = await new_page(browser, web.base_url, username="bob", viewport=PHONE_360)
        await bob.goto("/rooms/general")
        await connected(bob)
        # subscribed: the presence reply that follows the subscribe counts bob himself
        await bob.locator(".people-toggle", has_text="Online: 1").wait_for()
        await say(client, u["alice"], "room:general", {"text": "gg everyone"})
        await say(client, u["bob"], "room:general", {"text": "no rank here"})
        for _ in range(2):  # live, then from history after a reload
            mine = bob.locator(".msg", has_text="no rank here")
            await mine.wait_for()
            chip = bob.locator(".msg", has_text="gg everyone").locator(".rank-chip")
            assert (await chip.text_content()) == "G Gold"
            assert await chip.evaluate("el => getComputedStyle(el).color") == "rgb(212, 160, 23)"
            assert await mine.locator(".rank-chip").count() == 0
            await bob.reload()
            await connected(bob)
            await bob.locator(".people-toggle", has_text="Online: 1").wait_for()
        layout = await bob.evaluate(MEASURE, {"phone": True, "chat": True})  # the chip does not widen the row
        await screenshot(bob, "community-chat-rank")
        finish(layout, bob)
