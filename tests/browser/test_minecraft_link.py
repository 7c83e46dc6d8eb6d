"""Issue 18 in the PWA: a member links their Minecraft account with the code the game gave them
(Settings → Minecraft, on a 360 px phone), sees the name and head there and on their profile, and
a game chat bridge's messages show as "[game] Steve" in the room (events as a muted line), set
as text, never as markup. Screenshots: artifacts/screenshots/minecraft-*."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import connected, new_page, problems, screenshot, web_settings
from tests.browser.test_layout import MEASURE
from tests.browser.test_people import CONTROLS, TARGETS
from tests.conftest import fresh_sqlite_url
from tests.support.accounts import bearer, make_admin
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.wsclient import WsClient

PHONE_360 = {"width": 360, "height": 740}
UUID = "069a79f4-44e9-4726-a5be-fca90e38aaf5"
HEADS = "/avatars/{name}.svg?size={size}"  # a same-origin stand-in for the head service


@pytest.fixture
async def mc_web(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path), MINECRAFT_AVATAR_URL=HEADS)
    async with AppServer(settings) as server:
        yield server


async def measure(page: Any, name: str, found: list[str]) -> None:
    await page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    issues = await page.evaluate(MEASURE, {"phone": True, "chat": False})
    issues += await page.evaluate(TARGETS, CONTROLS)
    await screenshot(page, f"minecraft-{name}")
    found.extend(f"{name}: {issue}" for issue in issues)


async def test_link_with_a_code_on_a_phone_and_game_chat_in_the_room(browser: Any, mc_web: AppServer) -> None:
    async with mc_web.client() as client:
        u = await people(client, "root", "alice")
        await make_admin(mc_web, "root")
        created = await client.post("/api/admin/servers", json={"name": "Survival", "host": "127.0.0.1",
                                                                "port": 25565}, headers=u["root"]["headers"])
        sid = created.json()["id"]
        key = (await client.post(f"/api/admin/servers/{sid}/keys", json={"name": "plugin"},
                                 headers=u["root"]["headers"])).json()["key"]
        code = (await client.post("/api/plugin/link-codes", json={"name": "Steve", "uuid": UUID},
                                  headers=bearer(key))).json()["code"]
    layout: list[str] = []
    page = await new_page(browser, mc_web.base_url, username="alice", viewport=PHONE_360)
    await page.goto("/settings")
    await page.get_by_role("link", name="Minecraft account").click()
    await page.wait_for_url("**/settings/minecraft")
    await page.get_by_label("Code from the game").fill(code.lower())
    await measure(page, "link-form", layout)
    await page.get_by_role("button", name="Link", exact=True).click()
    linked = page.locator('#main [data-minecraft="Steve"]')
    await linked.wait_for()
    head = page.locator('#main img[alt="Steve\'s Minecraft head"]')
    assert "/avatars/Steve.svg" in (await head.get_attribute("src") or "")
    await measure(page, "linked", layout)

    await page.get_by_role("link", name="View your profile").click()
    await page.wait_for_url("**/u/alice")
    await page.locator("#main .minecraft", has_text="Steve").wait_for()
    pictures = await page.locator("#main img.avatar").evaluate_all("(imgs) => imgs.map((i) => i.src)")
    assert any("/avatars/Steve.svg" in src for src in pictures), pictures
    await measure(page, "profile", layout)

    # the game chat bridge (the server's bot, signed in with the key) speaks in the room
    await page.goto("/rooms/general")
    await connected(page)
    bot = await WsClient.connect(mc_web.base_url, key)
    for data in ({"text": "Steve joined the game", "via": {"source": "game", "name": "Steve"}, "system": "join"},
                 {"text": "<b>hello</b> from the game", "via": {"source": "game", "name": "Steve"}}):
        reply = await bot.request("publish", channel="room:general", data=data)
        assert reply["ok"], reply
    await bot.close()
    said = page.locator(".msg", has_text="from the game")
    await said.wait_for()
    assert await said.locator(".who").inner_text() == "[game] Steve"
    assert await said.locator(".text").inner_text() == "<b>hello</b> from the game"  # text, not markup
    event = page.locator(".msg.system", has_text="Steve joined the game")
    await event.wait_for()
    assert "muted" in (await event.locator(".text").get_attribute("class") or "")
    await screenshot(page, "minecraft-chat")
    found = problems(page)
    assert not layout and not any(found.values()), "\n".join([*layout, str(found)])


async def test_sign_up_with_a_code_prefills_the_minecraft_name(browser: Any, mc_web: AppServer) -> None:
    async with mc_web.client() as client:
        u = await people(client, "root")
        await make_admin(mc_web, "root")
        created = await client.post("/api/admin/servers", json={"name": "Creative", "host": "127.0.0.1",
                                                                "port": 25565}, headers=u["root"]["headers"])
        key = (await client.post(f"/api/admin/servers/{created.json()['id']}/keys", json={"name": "plugin"},
                                 headers=u["root"]["headers"])).json()["key"]
        code = (await client.post("/api/plugin/link-codes", json={"name": "Notch", "uuid": UUID},
                                  headers=bearer(key))).json()["code"]
    layout: list[str] = []
    page = await new_page(browser, mc_web.base_url, viewport=PHONE_360)
    await page.goto(f"/signup?code={code}")
    await page.get_by_text("linked to the Minecraft player Notch").wait_for()
    assert await page.get_by_label("Username").input_value() == "Notch"
    await page.get_by_label("Email").fill("notch@example.com")
    await page.get_by_label("Password").fill("correct horse battery staple 42")
    await measure(page, "signup", layout)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url(lambda url: "/signup" not in url)
    state = await (await page.context.request.get("/api/minecraft/link")).json()
    assert state["minecraft"]["name"] == "Notch"
    found = problems(page)
    assert not layout and not any(found.values()), "\n".join([*layout, str(found)])
