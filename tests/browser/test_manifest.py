"""Acceptance 5: the manifest has what an installable app needs, its icons exist at their sizes,
and its shortcuts, protocol handler and share target lead to real pages; the worker and the app
shell are served the way browsers require."""

from __future__ import annotations

import struct
from urllib.parse import quote

from tests.browser.conftest import new_page, screenshot
from tests.support.appserver import AppServer

REQUIRED = ("id", "name", "short_name", "start_url", "scope", "display", "background_color", "theme_color", "icons")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


async def test_manifest_icons_shortcuts_and_handlers(web: AppServer) -> None:
    async with web.client() as client:
        page = await client.get("/")
        assert '<link rel="manifest" href="/manifest.json">' in page.text
        response = await client.get("/manifest.json")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/manifest+json")
        manifest = response.json()
        for key in REQUIRED:
            assert manifest.get(key), f"manifest lacks {key}"
        assert manifest["display"] in ("standalone", "fullscreen", "minimal-ui")
        assert manifest["theme_color"].lower() == "#0f172a" and manifest["background_color"].lower() == "#0f172a"

        purposes = {}
        for icon in manifest["icons"]:
            data = (await client.get(icon["src"])).content
            width, height = png_size(data)
            assert f"{width}x{height}" == icon["sizes"], icon
            purposes.setdefault(icon.get("purpose", "any"), set()).add(icon["sizes"])
        assert {"192x192", "512x512"} <= purposes["any"] and "512x512" in purposes["maskable"]

        names = {s["name"]: s["url"] for s in manifest["shortcuts"]}
        assert names == {"Rooms": "/rooms", "Direct messages": "/dms", "Notifications": "/notifications"}
        for shortcut in manifest["shortcuts"]:
            landed = await client.get(shortcut["url"])
            assert landed.status_code == 200 and 'id="main"' in landed.text
            for icon in shortcut.get("icons", []):
                assert (await client.get(icon["src"])).status_code == 200

        [handler] = manifest["protocol_handlers"]
        assert handler["protocol"] == "web+vonix" and "%s" in handler["url"]
        opened = await client.get(handler["url"].replace("%s", quote("web+vonix://room/general", safe="")))
        assert opened.status_code == 200 and 'id="main"' in opened.text
        share = manifest["share_target"]
        assert share["action"] == "/share" and share["params"]["text"] == "text"
        assert (await client.get("/share?text=hi")).status_code == 200

        worker = await client.get("/sw.js")
        assert worker.status_code == 200 and worker.headers["service-worker-allowed"] == "/"
        assert worker.headers["cache-control"] == "no-cache" and "javascript" in worker.headers["content-type"]
        assert "__BUILD__" not in worker.text and "__PRECACHE__" not in worker.text
        assert '"/static/js/app.js"' in worker.text and '"/offline.html"' in worker.text
        # The API docs viewer (Swagger UI, ~1.9 MB) is served but never precached by an install.
        assert "/static/vendor/" not in worker.text and "api-docs" not in worker.text
        assert (await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")).status_code == 200
        for path in ("/offline.html", "/rooms/general", "/dms/alice", "/settings", "/reset-password",
                     "/verify-email", "/notifications", "/signin", "/signup"):
            assert (await client.get(path)).status_code == 200, path
        avatar = await client.get("/avatars/alice.svg")
        assert avatar.status_code == 200 and avatar.headers["content-type"].startswith("image/svg+xml")
        assert (await client.get("/api/app/config")).json()["push"]["enabled"] is True


async def test_protocol_link_opens_the_room(browser: object, web: AppServer) -> None:
    from tests.browser.conftest import make_users

    await make_users(web, "alice")
    page = await new_page(browser, web.base_url, username="alice")
    await page.goto("/open?link=" + quote("web+vonix://room/general", safe=""))
    await page.wait_for_url("**/rooms/general")
    await page.get_by_role("heading", name="# general").wait_for()
    await page.goto("/share?text=" + quote("look at this build"))
    await page.get_by_label("Message").wait_for()
    assert await page.get_by_label("Message").input_value() == "look at this build"
    await page.get_by_role("button", name="Post to room").click()
    await page.wait_for_url("**/rooms/general")
    await page.locator(".msg:not(.pending) .text", has_text="look at this build").wait_for()
    await screenshot(page, "share-posted-desktop")
    assert page.errors == []
