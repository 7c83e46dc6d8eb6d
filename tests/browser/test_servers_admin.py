"""The admin's game servers screen (/admin/servers), on a 360x740 phone: a refused server shows its
field errors with the admin's text kept; a server pointing at a stand-in Minecraft server is listed
with its live status, which follows the game server live; a second one is moved up the list,
edited and deleted. A member (desktop) is told the screen is for admins. The screen is measured at
360 px and on the desktop; every page ends with no errors but the refusals the test asked for."""

from __future__ import annotations

from typing import Any

from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import DESKTOP, connected, new_page
from tests.browser.test_community import PHONE_360, live_ready, measure
from tests.browser.test_people import clean
from tests.support.accounts import make_admin
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.mc_standin import JavaStandin


async def poll_until_shown(web: AppServer, status: Any) -> None:
    """A poll now, not the interval's, and the status must show without a reload. On a loaded
    machine one ping to the stand-in can miss its timeout (the server then reads offline until
    the next poll), so poll again, a few times, before giving up."""
    for _ in range(10):
        await web.resources.mc_status.poll_now()
        try:
            await status.wait_for(timeout=3_000)
            return
        except PlaywrightTimeoutError:
            continue
    await status.wait_for()


async def test_admin_adds_edits_orders_and_deletes_servers_with_live_status(browser: Any, web: AppServer) -> None:
    async with web.client() as client:
        await people(client, "root", "bob")
        await make_admin(web, "root")
    layout: list[str] = []
    async with JavaStandin(online=3, max_players=20) as game, JavaStandin(online=1, max_players=10) as other:
        root = await new_page(browser, web.base_url, username="root", viewport=PHONE_360)
        await root.goto("/admin/servers")
        await connected(root)
        await live_ready(root)
        await root.get_by_text("No servers yet").wait_for()
        form = root.locator('form[data-server-form="new"]')

        # refused field by field; what she typed stays
        await form.get_by_label("Name").fill("ab")
        await form.get_by_label("Host").fill("http://play.example.net")
        await form.get_by_role("button", name="Add server").click()
        await form.locator('[data-field="name"] .field-error').wait_for()
        await form.locator('[data-field="host"] .field-error').wait_for()
        assert await form.get_by_label("Name").input_value() == "ab"
        await measure(root, "servers-admin-refused", phone=True, found=layout)

        # a server pointing at the stand-in: listed, and its live status arrives by itself
        await form.get_by_label("Name").fill("Survival")
        await form.get_by_label("Host").fill("127.0.0.1")
        await form.get_by_label("Port").fill(str(game.port))
        await form.get_by_label("Version").fill("1.21.4")
        await form.get_by_role("button", name="Add server").click()
        card = root.locator("li[data-server]", has_text="Survival")
        await card.wait_for()
        # The first look on creation is tested in test_mc_status.py; here a poll makes the screen's
        # update independent of how soon a loaded machine gets round to it.
        await web.resources.wait_spawned()
        await poll_until_shown(web, card.locator(".server-status", has_text="Online · 3/20 players · Paper 1.21.4"))
        assert await card.locator(".server-address").text_content() == f" 127.0.0.1:{game.port} · Java"
        assert await form.get_by_label("Name").input_value() == ""

        # a plugin key for it: refused without a name, then shown once, working, listed, revoked
        await card.get_by_role("button", name="Plugin keys of Survival").click()
        keys = card.locator("section.server-keys")
        await keys.get_by_text("No keys yet.").wait_for()
        await keys.get_by_role("button", name="Issue key").click()
        await keys.locator('[data-field="name"] .field-error').wait_for()
        await keys.get_by_label("Key name").fill("Paper plugin")
        await keys.get_by_role("button", name="Issue key").click()
        secret = (await keys.locator(".new-key code.secret").text_content()) or ""
        assert secret.startswith("vxs_"), secret
        listed = keys.locator("li.plugin-key", has_text="Paper plugin")
        assert "last used never" in (await listed.text_content() or "")
        await measure(root, "servers-admin-key-shown-360", phone=True, found=layout)
        async with web.client() as plugin:
            asked = await plugin.get("/api/plugin/players/069a79f444e94726a5befca90e38aaf5",
                                     headers={"Authorization": f"Bearer {secret}"})
            assert asked.status_code == 200 and asked.json()["linked"] is False
            await listed.get_by_role("button", name="Revoke Paper plugin").click()
            await listed.get_by_role("button", name="Revoke", exact=True).click()
            await keys.locator('li.plugin-key[data-revoked="true"]', has_text="revoked").wait_for()
            refused = await plugin.get("/api/plugin/players/069a79f444e94726a5befca90e38aaf5",
                                       headers={"Authorization": f"Bearer {secret}"})
            assert refused.status_code == 401
        await card.get_by_role("button", name="Plugin keys of Survival").click()
        await keys.wait_for(state="detached")

        # the game server changes: the next poll shows on the screen without a reload
        game.online = 7
        await poll_until_shown(web, card.locator(".server-status", has_text="Online · 7/20 players"))

        # a second server; moved up to the top of the list
        await form.get_by_label("Name").fill("Creative")
        await form.get_by_label("Host").fill("127.0.0.1")
        await form.get_by_label("Port").fill(str(other.port))
        await form.get_by_role("button", name="Add server").click()
        creative = root.locator("li[data-server]", has_text="Creative")
        await creative.wait_for()
        await poll_until_shown(web, creative.locator(".server-status", has_text="Online · 1/10 players"))
        assert await root.locator("li[data-server] .title").all_text_contents() == ["Survival", "Creative"]
        await creative.get_by_role("button", name="Move Creative up").click()
        await root.locator("li[data-server]").first.locator(".title", has_text="Creative").wait_for()
        await measure(root, "servers-admin-list", phone=True, found=layout)

        # edited in place: a refusal first, then saved
        await creative.get_by_role("button", name="Edit Creative").click()
        edit = creative.locator("form[data-server-form]")
        await edit.get_by_label("Name").fill("Survival")
        await edit.get_by_role("button", name="Save").click()
        await edit.locator(".error", has_text="name exists").wait_for()
        await edit.get_by_label("Name").fill("Creative Plots")
        await edit.get_by_label("Description").fill("Build anything")
        await edit.get_by_role("button", name="Save").click()
        renamed = root.locator("li[data-server]", has_text="Creative Plots")
        await renamed.locator(".server-status").wait_for()
        assert await renamed.locator("form").count() == 0
        servers = (await (await root.context.request.get("/api/servers")).json())["servers"]
        assert [(s["name"], s["description"]) for s in servers] == [("Creative Plots", "Build anything"),
                                                                   ("Survival", "")]

        # deleted, after being asked once more
        await renamed.get_by_role("button", name="Delete Creative Plots").click()
        await renamed.locator(".confirm-question").wait_for()
        await renamed.get_by_role("button", name="Delete", exact=True).click()
        await renamed.wait_for(state="detached")
        assert await root.locator("li[data-server] .title").all_text_contents() == ["Survival"]

        # a member: not his screen
        bob = await new_page(browser, web.base_url, username="bob", viewport=DESKTOP)
        await bob.goto("/admin/servers")
        await bob.get_by_text("Only admins manage the game servers.").wait_for()

        await bob.goto("/servers")  # members see the servers, with their tabs, and no way to manage them
        await bob.locator('#nav a[data-nav="community"][aria-current="page"]').wait_for()
        assert await bob.get_by_role("link", name="Manage servers").count() == 0

        root_desktop = await new_page(browser, web.base_url, username="root", viewport=DESKTOP)
        await root_desktop.goto("/servers")  # the admin's way in
        await root_desktop.get_by_role("link", name="Manage servers").click()
        await root_desktop.wait_for_url("**/admin/servers")
        await root_desktop.locator("li[data-server] .server-status", has_text="Online").wait_for()
        await measure(root_desktop, "servers-admin-desktop", phone=False, found=layout)
        await web.resources.wait_spawned()

    found = [clean(root, allowed=((422, "POST", "/api/admin/servers"), (422, "POST", "/api/admin/servers/1/keys"),
                                  (409, "PATCH", "/api/admin/servers/2"))),
             clean(bob, allowed=((403, "GET", "/api/admin/servers"),)),
             clean(root_desktop)]
    assert not layout and not any(found), "\n".join([*layout, *map(str, found)])
