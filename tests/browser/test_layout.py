"""Every screen fits every width: phones of 320, 360, 390 and 414 px, the keyboard-height phone
(390x500) and a 1366 px desktop, with the worst content a community produces (32-character
usernames, a 64-character room name and a long topic, three-digit unread badges, long notification
text, replies, unbroken words of hundreds of letters), with a reply being composed and with the
update banner shown.

Asserted with geometry, not pixels: the document never scrolls sideways and no element pokes out of
the viewport; on phones the tab bar sits inside the viewport; in a conversation the message box and
"Send" are inside the viewport and are what a tap at their centre hits (not the tab bar, not the
banner); message text starts right of the avatar and is wide enough to read; the sessions'
"Sign out" buttons are reachable. All problems of all screens are collected, each failing screen is
screenshotted to artifacts/screenshots/layout-*.png, and the test fails listing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import new_page, screenshot, web_settings
from tests.browser.conftest import problems as problems_of
from tests.conftest import fresh_sqlite_url
from tests.support.accounts import PASSWORD
from tests.support.appserver import AppServer
from tests.support.community import people, say

ME = "averyveryverylongusername_alice1"     # 32 characters: the signed-in member
OTHER = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb_b"  # 32 characters, no break opportunity
THIRD = "charlie_the_builder_of_far_lands"  # 32 characters
ROOM = "longroomnameforthesurvivalsmpworldwithnetherhighwaysandfarms2024"  # 64 characters
TOPIC = ("Everything about the survival world: " + "supercalifragilisticexpialidocious" * 4
         + " and the nether highway, farms, trading halls, redstone contraptions and weekly build contests.")
WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 6  # 270 letters, no break opportunity
VIEWPORTS = (
    ("320", {"width": 320, "height": 640}),
    ("360", {"width": 360, "height": 740}),
    ("390", {"width": 390, "height": 844}),
    ("414", {"width": 414, "height": 896}),
    ("390x500", {"width": 390, "height": 500}),  # a phone with its on-screen keyboard up
    ("1366", {"width": 1366, "height": 800}),
)
PHONE_MAX = 768
SHOWN = ("360", "1366")  # every screen at these widths is kept in artifacts/screenshots/ for a human look

# Geometry of the current screen, measured in the page. Returns a list of problems (strings).
MEASURE = """
({ phone, chat }) => {
  const problems = [];
  const vw = window.innerWidth, vh = window.innerHeight;
  const de = document.documentElement;
  const label = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '')
    + (el.textContent ? ' "' + el.textContent.trim().slice(0, 40) + '"' : '');
  const shown = (el) => {
    if (!el) return false;
    const style = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    return style.display !== 'none' && style.visibility !== 'hidden' && r.width > 0 && r.height > 0;
  };
  const inside = (r) => r.left >= -0.5 && r.top >= -0.5 && r.right <= vw + 0.5 && r.bottom <= vh + 0.5;
  const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5
    && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  const fmt = (r) => `[${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}x${Math.round(r.height)}]`;

  if (de.scrollWidth > vw) problems.push(`the page scrolls sideways: scrollWidth ${de.scrollWidth} > ${vw}`);
  if (document.body.scrollWidth > vw) problems.push(`the body is ${document.body.scrollWidth} px wide > ${vw}`);

  // No element pokes out sideways (after clipping by its scrolling/clipping ancestors), and no
  // element scrolls sideways inside (a log that needs a horizontal scrollbar is as bad).
  const reported = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.classList.contains('skip') || el.closest('[hidden], noscript, script, style')) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.position === 'fixed' && el.id === 'toast') continue;
    let r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    let left = r.left, right = r.right;
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const s = getComputedStyle(a);
      // Clipping by the frame itself (main, a conversation, its log) would hide content cut off.
      if (s.overflowX !== 'visible' && !a.matches('#main, .layout, .chat, .log')) {
        const ar = a.getBoundingClientRect();
        left = Math.max(left, ar.left); right = Math.min(right, ar.right);
      }
    }
    if (right - left <= 0) continue;
    if ((left < -0.5 || right > vw + 0.5) && !reported.some((outer) => outer.contains(el))) {
      reported.push(el);  // its descendants are not listed again
      problems.push(`${label(el)} is outside the viewport sideways: ${fmt(r)}`);
    }
    if ((style.overflowX === 'auto' || style.overflowX === 'scroll') && el.scrollWidth > el.clientWidth + 1)
      problems.push(`${label(el)} scrolls sideways inside: ${el.scrollWidth} > ${el.clientWidth}`);
  }

  const nav = document.getElementById('nav');
  const banner = document.getElementById('update');
  const bannerRect = shown(banner) ? banner.getBoundingClientRect() : null;
  if (bannerRect && !inside(bannerRect)) problems.push(`the update banner is outside the viewport: ${fmt(bannerRect)}`);
  if (nav && !nav.hidden) {
    if (!shown(nav)) problems.push('the tab bar is not visible');
    const r = nav.getBoundingClientRect();
    if (phone && !inside(r)) problems.push(`the tab bar is outside the viewport: ${fmt(r)}`);
    for (const a of nav.querySelectorAll('a')) {
      const ar = a.getBoundingClientRect();
      if (!shown(a) || ar.left < -0.5 || ar.right > vw + 0.5 || (phone && !inside(ar)))
        problems.push(`the tab ${label(a)} is not on screen: ${fmt(ar)}`);
    }
    if (bannerRect && overlap(bannerRect, r)) problems.push('the banner covers the tab bar');
  }
  const navRect = nav && shown(nav) ? nav.getBoundingClientRect() : null;

  const reachable = (el, what) => {
    if (!shown(el)) { problems.push(`${what} is not visible`); return; }
    const r = el.getBoundingClientRect();
    if (!inside(r)) problems.push(`${what} is outside the viewport: ${fmt(r)} in ${vw}x${vh}`);
    if (navRect && phone && overlap(r, navRect)) problems.push(`${what} is under the tab bar`);
    if (bannerRect && overlap(r, bannerRect)) problems.push(`${what} is under the update banner`);
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    const hit = x >= 0 && y >= 0 && x < vw && y < vh ? document.elementFromPoint(x, y) : null;
    if (!hit || !(hit === el || el.contains(hit)))
      problems.push(`a tap on ${what} hits ${hit ? label(hit) : 'nothing'}`);
  };

  const composer = document.querySelector('#main .composer');
  if (chat && !composer) problems.push('no composer on a conversation screen');
  if (composer) {
    reachable(composer.querySelector('textarea'), 'the message box');
    const send = [...composer.querySelectorAll('button')].find((b) => /^\\s*Send\\s*$/.test(b.textContent));
    if (send) reachable(send, 'the Send button'); else problems.push('no Send button');
    const replying = composer.querySelector('.replying');
    if (replying && shown(replying)) {
      for (const b of replying.querySelectorAll('button')) reachable(b, `the ${b.textContent.trim()} button`);
    }
  }
  for (const msg of document.querySelectorAll('#main .msg')) {
    const avatar = msg.querySelector('.avatar'), text = msg.querySelector('.text');
    if (!avatar || !text) continue;
    const a = avatar.getBoundingClientRect(), t = text.getBoundingClientRect();
    if (t.left < a.right - 0.5) {
      const where = `${Math.round(t.left)} < ${Math.round(a.right)}`;
      problems.push(`message text starts in the avatar column (${where}): ${label(text)}`);
    }
    if (phone && t.width <= 100) problems.push(`message text is only ${Math.round(t.width)} px wide: ${label(text)}`);
    for (const part of msg.querySelectorAll('.meta, .quote')) {
      const p = part.getBoundingClientRect();
      if (p.width && p.left < a.right - 0.5) problems.push(`${label(part)} starts in the avatar column`);
    }
  }
  for (const button of document.querySelectorAll('#main button, #main .btn')) {
    if (!shown(button)) continue;
    const r = button.getBoundingClientRect();
    if (r.left < -0.5 || r.right > vw + 0.5) problems.push(`${label(button)} is off screen sideways: ${fmt(r)}`);
  }
  return problems;
}
"""


async def seed(server: AppServer) -> dict[str, dict[str, Any]]:
    """Members, a long room, replies with long words, mentions and more sessions of the member."""
    async with server.client() as client:
        crowd = await people(client, ME, OTHER, THIRD)
        me, other, third = crowd[ME], crowd[OTHER], crowd[THIRD]
        response = await client.post("/api/rooms", json={"name": ROOM, "topic": TOPIC}, headers=other["headers"])
        assert response.status_code == 201, response.text
        for who in (me, third):
            assert (await client.post(f"/api/rooms/{ROOM}/join", headers=who["headers"])).status_code < 300
        first = await say(client, me, "room:general", {"text": "Who wants to build a mob farm tonight? " + WORD})
        await say(client, other, "room:general", {"text": f"@{ME} yes! " + WORD, "reply_to": first})
        asked = await say(client, other, "room:general", {"text": "Meet at spawn at 8"})
        await say(client, me, "room:general", {"text": "see you there", "reply_to": asked})
        await say(client, third, "room:general", {"text": f"@{ME} " + "bring diamonds " * 40})
        await say(client, third, "room:general", {"text": WORD, "reply_to": asked})
        # More sessions of the member: the settings list shows each with a "Sign out" button.
        for agent in ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/120.0.0.0 Mobile Safari/537.36",
                      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
                      "(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1"):
            response = await client.post("/api/auth/login", json={"login": ME, "password": PASSWORD},
                                         headers={"User-Agent": agent})
            assert response.status_code == 200, response.text
    return crowd


async def unread(server: AppServer, crowd: dict[str, dict[str, Any]]) -> None:
    """New unread for the member (a viewport's visits read the last): a three-digit room badge,
    mentions, and DMs from two people."""
    other, third = crowd[OTHER], crowd[THIRD]
    async with server.client() as client:
        for n in range(60):
            long = "a long word " + WORD if n % 20 == 0 else ""
            await say(client, other, f"room:{ROOM}", {"text": f"message {n} {long}"})
        for n in range(45):
            await say(client, third, f"room:{ROOM}", {"text": f"@{ME} message {n} about the nether highway"})
        for sender in (other, third):
            dm = await client.post("/api/dms", json={"username": ME}, headers=sender["headers"])
            assert dm.status_code in (200, 201), dm.text
            for n in range(2):
                await say(client, sender, dm.json()["channel"], {"text": f"trade diamonds for {n} stacks? " + WORD})


async def settle(page: Any) -> None:
    """Let layout settle: fonts, avatars, the log scrolled to the bottom."""
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


async def check(page: Any, key: str, *, phone: bool, chat: bool, problems: list[str]) -> None:
    """Measure the screen as it is and with the update banner shown."""
    for banner in (False, True):
        if banner:
            await page.evaluate("document.getElementById('update').hidden = false")
        await settle(page)
        found = await page.evaluate(MEASURE, {"phone": phone, "chat": chat})
        name = f"{key}{'-banner' if banner else ''}"
        if found:
            problems.extend(f"{name}: {p}" for p in found)
        if found or key.split("-", 1)[0] in SHOWN:
            await screenshot(page, f"layout-{name}")
        if banner:
            await page.evaluate("document.getElementById('update').hidden = true")


async def the_check_sees_a_broken_layout(page: Any) -> None:
    """The measurement is not vacuous: the layouts this test guards against are reported."""
    await page.evaluate("""() => {
      for (const el of document.querySelectorAll('.msg .text')) {
        el.style.gridColumn = '1';
        el.style.gridRow = 'auto';
      }
      document.querySelector('.chat-head h1').style.minWidth = '900px';
      document.querySelector('.composer').style.transform = 'translateY(2000px)';
    }""")
    await settle(page)
    found = " | ".join(await page.evaluate(MEASURE, {"phone": True, "chat": True}))
    for needle in ("sideways", "avatar column", "the Send button is outside the viewport"):
        assert needle in found, found


async def test_every_screen_fits_every_width(browser: Any, sqlite_template: Path, tmp_path: Path) -> None:
    # The default limits, except for writes: the seed posts a busy evening's messages in a second.
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path), RATE_LIMIT_ACTIONS="post=1000/60",
                            RATE_LIMIT_WRITE="1000/60+1000")
    async with AppServer(settings) as server:
        crowd = await seed(server)
        problems = await every_screen(browser, server, crowd)
    assert not problems, "\n".join(problems)


async def every_screen(browser: Any, web: AppServer, crowd: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for size, viewport in VIEWPORTS:
        await unread(web, crowd)
        phone = viewport["width"] < PHONE_MAX
        page = await new_page(browser, web.base_url, viewport=viewport)
        for path, heading in (("/signin", "Sign in to Vonix"), ("/signup", None)):
            await page.goto(path)
            await page.locator("#main h1").first.wait_for()
            if heading:
                await page.get_by_role("heading", name=heading).wait_for()
            await check(page, f"{size}-{path.strip('/')}", phone=phone, chat=False, problems=problems)
        response = await page.context.request.post("/api/auth/login", data={"login": ME, "password": PASSWORD,
                                                                            "mode": "cookie"})
        assert response.ok, await response.text()

        screens = (
            ("rooms", "/rooms", f'.list a.item[href="/rooms/{ROOM}"] .count', False),
            ("room-long", f"/rooms/{ROOM}", ".msg .text", True),
            ("dms", "/dms", ".list a.item", False),
            ("dm", f"/dms/{OTHER}", ".msg .text", True),
            ("notifications", "/notifications", ".list a.item", False),
            ("settings", "/settings", "#main button[aria-label^='Sign out ']", False),
            ("missing-room", "/rooms/doesnotexist", "#main :is(h1, .error, [role=alert])", False),
        )
        for name, path, ready, chat in screens:
            await page.goto(path)
            await page.locator(ready).first.wait_for()
            if name == "missing-room":
                await page.wait_for_load_state("networkidle")
            await check(page, f"{size}-{name}", phone=phone, chat=chat, problems=problems)

        await page.goto("/rooms/general")
        await page.locator(".msg .quote").first.wait_for()
        await page.get_by_role("button", name=f"Reply to {OTHER}").first.click()
        await page.get_by_text(f"Replying to {OTHER}").wait_for()
        await check(page, f"{size}-room-replying", phone=phone, chat=True, problems=problems)
        if size == "390":
            await the_check_sees_a_broken_layout(page)
        # Every screen at every width with zero failed requests: the only refusal is the one the
        # missing-room screen is about (404 for /api/rooms/doesnotexist, and its console line).
        found = problems_of(page)
        missing = [r for r in found["status"] if r.startswith("404 ") and r.endswith("/api/rooms/doesnotexist")]
        assert len(missing) == 1, found
        found["status"] = [r for r in found["status"] if r not in missing]
        found["console"] = [c for c in found["console"] if "status of 404" not in c]
        assert len(problems_of(page)["console"]) - len(found["console"]) <= len(missing), found
        assert not any(found.values()), found
        await page.context.close()
    return problems
