"""Issue 18, the public home page: what a visitor sees of the community, signed out, at 360 px and
at a desktop width, live over a guest websocket, fast on first load and readable offline.

A stand-in Minecraft server (tests/support/mc_standin.py) is registered through the admin API.
Signed out, `/` shows it online with its player count and MOTD; the copy button puts its address on
the clipboard; the players chart (an inline SVG) is drawn; the next public event and the latest
public post show, with the sign-in and sign-up buttons. The page came with the home data inlined
(`<script type="application/json" id="boot">`) and its first render asked neither `/api/servers`
nor `/api/home`. When the stand-in stops, both pages flip to "Offline" without a reload (the
guest websocket on `status:servers`); a server page shows status, players, uptime and the chart
with its 24 h / 7 days switch. Offline after one visit, a reload shows the last known state,
labelled "Offline — last updated HH:MM". Signed in, `/` leads to the member's home, and the
servers are one tap away (the community's "Servers" link). Every screen is measured (no sideways
scrolling, nothing under a bar, 40 px targets) and ends with zero page errors, console errors,
failed requests and 4xx/5xx answers. Screenshots: artifacts/screenshots/home-*.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import (
    DESKTOP,
    connected,
    new_page,
    problems,
    screenshot,
    sign_in_with_form,
    web_settings,
    worker_ready,
)
from tests.browser.test_layout import MEASURE
from tests.browser.test_people import CONTROLS, TARGETS
from tests.conftest import fresh_sqlite_url
from tests.support.accounts import make_admin
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.mc_standin import JavaStandin, png

PHONE_360 = {"width": 360, "height": 740}
# The client's MOTD sanitiser, fed what a wrong server could send: only text, <br> and known mc-* spans survive.
HOSTILE_MOTD = """async () => {
  const { motdNodes } = await import('/static/js/views/servers.js');
  const box = document.createElement('p');
  box.append(motdNodes('<span class="mc-red evil">a &amp; &lt;b&gt;</span>'
    + '<span class="mc-bold" onclick="window.pwned=1">x</span><img src=x onerror="window.pwned=1">'
    + '<script>window.pwned=1</script><br><svg onload="window.pwned=1"/>'));
  document.body.append(box);
  await new Promise((done) => setTimeout(done, 200));
  box.remove();
  return [box.innerHTML, window.pwned === undefined];
}"""
HOME_CONTROLS = CONTROLS + ", #main .server-name a, #main .subnav a, #main .crumbs a, #main .server-details a"


@pytest.fixture
async def home_web(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    """The app on embedded SQLite, polling game servers at the shortest interval allowed (5 s)."""
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path), MC_STATUS_INTERVAL=5, MC_STATUS_TIMEOUT=1)
    async with AppServer(settings) as server:
        yield server


async def measure(page: Any, name: str, *, phone: bool, found: list[str]) -> None:
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(MEASURE, {"phone": phone, "chat": False})
    issues += await page.evaluate(TARGETS, HOME_CONTROLS)
    await page.evaluate("document.getElementById('main').scrollTop = 0")
    await screenshot(page, f"home-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


async def until(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


def api_reads(page: Any) -> list[str]:
    """The page's requests for the home data itself (the chart's history is not one of them)."""
    return [r for r in page.requests if urlsplit(r.split(" ", 1)[1]).path in ("/api/servers", "/api/home")]


async def setup(server: AppServer, standin: JavaStandin) -> dict[str, Any]:
    async with server.client() as client:
        crowd = await people(client, "alice")
        alice = crowd["alice"]
        await make_admin(server, "alice")
        created = await client.post("/api/admin/servers", json={
            "name": "Survival", "host": "127.0.0.1", "port": standin.port, "edition": "java", "version": "1.21.4",
            "description": "Our main world.", "map_url": "https://map.example.net/"}, headers=alice["headers"])
        assert created.status_code == 201, created.text
        start = datetime.now(UTC) + timedelta(hours=3)
        made = await client.post("/api/events", json={"title": "Build contest", "starts_at": start.isoformat(),
                                                      "ends_at": (start + timedelta(hours=2)).isoformat()},
                                 headers=alice["headers"])
        assert made.status_code == 201, made.text
        posted = await client.post("/api/posts", json={"content": "Welcome to Vonix!"}, headers=alice["headers"])
        assert posted.status_code == 201, posted.text
        secret = await client.post("/api/posts", json={"content": "friends only", "visibility": "friends"},
                                   headers=alice["headers"])
        assert secret.status_code == 201, secret.text

        async def online() -> bool:
            body = (await client.get("/api/home")).json()
            status = body["servers"][0]["status"]
            return bool(status and status["online"])

        assert await until(online), "the stand-in was never seen online"
    return dict(created.json())


async def visit_signed_out(page: Any, server: dict[str, Any], name: str, *, phone: bool, found: list[str]) -> None:
    response = await page.goto("/")
    assert response is not None and response.ok
    shell = await response.text()
    assert '<script type="application/json" id="boot">' in shell and "Survival" in shell
    card = page.locator(f'.server-card[data-server-id="{server["id"]}"]')
    await card.and_(page.locator('[data-state="online"]')).wait_for()
    assert (await card.locator(".server-players").inner_text()).strip() == "3 / 20 players"
    assert await card.locator(".motd .mc-gold").count() >= 1  # the MOTD's colours, as classes
    assert await card.locator(".motd script, .motd img").count() == 0
    assert (await card.locator(".address").inner_text()).strip() == server["address"]
    await page.get_by_role("heading", name="Vonix Network", level=1).wait_for()
    await page.locator(".home-events").get_by_text("Build contest").wait_for()
    await page.locator(".home-posts").get_by_text("Welcome to Vonix!").wait_for()
    assert await page.get_by_text("friends only").count() == 0
    chart = page.locator(".home-chart svg.chart")
    await chart.wait_for()
    assert int(await chart.get_attribute("data-points") or 0) >= 1
    assert await chart.locator(".chart-line path.stroke").count() >= 1
    await connected(page)  # the guest websocket
    assert api_reads(page) == [], api_reads(page)  # the first render used the inlined data

    await card.locator(".copy-btn").click()
    await card.locator(".copy-btn", has_text="Copied").wait_for()
    assert await page.evaluate("navigator.clipboard.readText()") == server["address"]
    await measure(page, name, phone=phone, found=found)


async def test_public_home_live_copy_chart_and_offline(browser: Any, home_web: AppServer) -> None:
    layout: list[str] = []
    standin = await JavaStandin(online=3, max_players=20, sample=["Steve", "Alex", "Notch"], favicon=png()).start()
    try:
        server = await setup(home_web, standin)
        clipboard = {"permissions": ["clipboard-read", "clipboard-write"]}
        phone = await new_page(browser, home_web.base_url, viewport=PHONE_360, **clipboard)
        desk = await new_page(browser, home_web.base_url, viewport=DESKTOP, **clipboard)
        await visit_signed_out(phone, server, "landing-phone", phone=True, found=layout)
        await visit_signed_out(desk, server, "landing-desktop", phone=False, found=layout)
        assert await desk.evaluate(HOSTILE_MOTD) == [
            '<span class="mc-red">a &amp; &lt;b&gt;</span>&lt;span class="mc-bold" onclick="window.pwned=1"&gt;x'
            '&lt;img src=x onerror="window.pwned=1"&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;<br>'
            '&lt;svg onload="window.pwned=1"/&gt;', True]

        # a server's own page: status, players, links, uptime, the chart and its range switch
        await desk.locator(".server-name a", has_text="Survival").click()
        await desk.wait_for_url(f"**/servers/{server['id']}")
        await desk.get_by_role("heading", name="Survival", level=1).wait_for()
        await desk.locator(".player-list li", has_text="Notch").wait_for()
        link = desk.locator(".server-details a", has_text="Open the map")
        assert await link.get_attribute("rel") == "noopener noreferrer"
        assert await link.get_attribute("href") == "https://map.example.net/"
        await desk.locator(".server-page svg.chart").wait_for()
        await desk.locator(".chart-ranges button", has_text="7 days").click()
        await desk.locator('.chart-slot[data-range="7d"] svg.chart').wait_for()
        await measure(desk, "server-desktop", phone=False, found=layout)
        await desk.go_back()
        await desk.locator(".server-card").wait_for()
        assert api_reads(desk) == [], api_reads(desk)  # back home: the data in memory, kept live

        # the same on a phone
        await phone.locator(".server-name a", has_text="Survival").click()
        await phone.locator(".server-page svg.chart").wait_for()
        await measure(phone, "server-phone", phone=True, found=layout)
        await phone.go_back()
        await phone.locator(".server-card").wait_for()
        await connected(phone)

        # live, without a reload: the stand-in stops; the desktop visitor sees the server go offline
        # at once, the phone (its network gone meanwhile) when it is back, from the guest socket's
        # recovery (`since`)
        for page in (phone, desk):
            await page.evaluate("window.sameDocument = true")
        await phone.context.set_offline(True)
        await phone.locator('#conn[data-state="offline"]').wait_for()
        await standin.stop()
        await home_web.resources.mc_status.poll_now()  # the next poll, now (the poller's own comes within 5 s)
        await desk.locator(f'.server-card[data-server-id="{server["id"]}"][data-state="offline"]').wait_for()
        assert await phone.locator(f'.server-card[data-server-id="{server["id"]}"][data-state="online"]').count() == 1
        await phone.context.set_offline(False)
        await connected(phone)
        for page in (phone, desk):
            card = page.locator(f'.server-card[data-server-id="{server["id"]}"][data-state="offline"]')
            await card.wait_for(timeout=15000)
            assert await page.evaluate("window.sameDocument === true")
            assert await card.locator(".motd").count() == 0
        found = {"phone": problems(phone), "desktop": problems(desk)}
        assert not layout and not any(any(f.values()) for f in found.values()), "\n".join([*layout, str(found)])

        # offline after a visit: the last known state (offline, from the live update), labelled
        await worker_ready(phone)
        await phone.context.set_offline(True)
        await phone.reload()
        note = phone.locator(".offline-note")
        await note.wait_for()
        assert re.fullmatch(r"Offline — last updated \d\d:\d\d", (await note.inner_text()).strip())
        await phone.locator(f'.server-card[data-server-id="{server["id"]}"][data-state="offline"]').wait_for()
        await phone.locator(".home-posts").get_by_text("Welcome to Vonix!").wait_for()
        await screenshot(phone, "home-offline-phone")
        assert phone.errors == [], phone.errors
        await phone.context.set_offline(False)

        # sign in and sign up lead where they say
        await desk.get_by_role("link", name="Create an account").click()
        await desk.wait_for_url("**/signup")
        await desk.go_back()
        await desk.get_by_role("link", name="Sign in").click()
        await desk.wait_for_url("**/signin")
        await sign_in_with_form(desk, "alice")
        await desk.get_by_role("heading", name="Community", level=1).wait_for()
        await desk.locator('#main > section[data-live="ready"]').wait_for()
        await desk.wait_for_load_state("networkidle")
        assert not any(problems(desk).values()), problems(desk)

        # signed in (a phone this time), "/" is the member's home, and the servers one tap away
        member = await new_page(browser, home_web.base_url, viewport=PHONE_360, username="alice")
        await member.goto("/")
        await member.wait_for_url("**/community")
        await member.locator('#main > section[data-live="ready"]').wait_for()
        await member.locator('#main .subnav a[href="/servers"]').click()
        await member.wait_for_url("**/servers")
        await member.get_by_role("heading", name="Game servers", level=1).wait_for()
        await member.locator(f'.server-card[data-server-id="{server["id"]}"][data-state="offline"]').wait_for()
        await member.locator('#nav a[data-nav="community"][aria-current="page"]').wait_for()
        await measure(member, "servers-member-phone", phone=True, found=layout)
        await member.wait_for_load_state("networkidle")
        assert not layout, "\n".join(layout)
        assert not any(problems(member).values()), problems(member)
    finally:
        await standin.stop()
