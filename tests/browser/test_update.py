"""The update flow: a changed client installs a new service worker, the page says a new version is
ready, "Reload" switches to it and the old version's caches are removed on activation; after the
reload the page runs on the NEW files, served by the worker (not the previous release's files out
of the browser's HTTP cache: the precache asks with `cache: "reload"`, and `/static/` answers
`no-cache` with validators)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import copy_client, make_users, new_page, screenshot, web_settings, worker_ready
from tests.conftest import fresh_sqlite_url
from tests.support.appserver import AppServer

SHELL_CACHES = "caches.keys().then((keys) => keys.filter((k) => k.startsWith('vonix-shell-')))"
MARKER = "getComputedStyle(document.body).getPropertyValue('--release-marker').trim()"
BRAND_COLOUR = "getComputedStyle(document.querySelector('.brand')).color"
NEW_RULES = "\n/* a new release */\nbody { --release-marker: 2; }\n.topbar .brand { color: rgb(250, 204, 21); }\n"


async def test_new_version_is_offered_and_old_caches_go(browser: Any, sqlite_template: Path, tmp_path: Path) -> None:
    static = copy_client(tmp_path)
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path), STATIC_DIR=str(static))
    async with AppServer(settings) as server:
        await make_users(server, "alice")
        page = await new_page(browser, server.base_url, username="alice")
        await page.goto("/rooms")
        await worker_ready(page)
        [old_cache] = await page.evaluate(SHELL_CACHES)
        assert await page.locator("#update").is_hidden()
        assert await page.evaluate(MARKER) == ""
        old_colour = await page.evaluate(BRAND_COLOUR)
        await page.reload()  # now controlled: the worker serves the (old) CSS from its precache
        await page.get_by_role("heading", name="Rooms").wait_for()

        # The worker's own requests (its precache) as the server receives them.
        worker_requests: list[Any] = []
        page.context.on("request", lambda r: worker_requests.append(r) if r.service_worker is not None else None)
        with (static / "app.css").open("a") as css:
            css.write(NEW_RULES)
        await page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.update())")
        await page.get_by_text("A new version of Vonix is ready.").wait_for(timeout=15000)
        await screenshot(page, "update-banner-desktop")
        async with page.expect_response(lambda r: r.url.endswith("/static/app.css")) as css_response:
            async with page.expect_navigation():
                await page.get_by_role("button", name="Reload").click()
        deadline = time.monotonic() + 15
        while (caches := await page.evaluate(SHELL_CACHES)) == [old_cache] or len(caches) != 1:
            assert time.monotonic() < deadline, caches
            await asyncio.sleep(0.1)
        assert caches != [old_cache]
        await page.get_by_role("heading", name="Rooms").wait_for()
        assert await page.locator("#update").is_hidden()

        # The reloaded page runs on the new stylesheet, and the worker served it.
        response = await css_response.value
        assert response.from_service_worker, "the stylesheet after Reload did not come from the service worker"
        assert "--release-marker: 2" in await response.text()
        assert await page.evaluate(MARKER) == "2"
        assert await page.evaluate(BRAND_COLOUR) == "rgb(250, 204, 21)" != old_colour
        cached = await page.evaluate("caches.match('/static/app.css').then((r) => r && r.text())")
        assert cached is not None and "--release-marker: 2" in cached
        # The precache asked the server past the HTTP cache (a `cache: "reload"` request), not a
        # conditional or cached request that could hand back the previous release.
        precache = [r for r in worker_requests if r.url.endswith("/static/app.css")]
        assert precache, [r.url for r in worker_requests]
        headers = await precache[0].all_headers()
        assert headers.get("cache-control") == "no-cache" and "if-none-match" not in headers, headers
        assert page.errors == []


async def test_static_files_are_revalidated(sqlite_template: Path, tmp_path: Path) -> None:
    """`/static/` answers `no-cache` with validators: a browser reuses a copy only after asking,
    and the answer to that question (304) says the same."""
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path))
    async with AppServer(settings) as server, server.client() as client:
        first = await client.get("/static/app.css")
        assert first.status_code == 200
        assert first.headers["cache-control"] == "no-cache"
        assert first.headers["etag"] and first.headers["last-modified"]
        again = await client.get("/static/app.css", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["cache-control"] == "no-cache"
        assert (await client.get("/static/js/app.js")).headers["cache-control"] == "no-cache"
