"""The update flow: a changed client installs a new service worker, the page says a new version is
ready, "Reload" switches to it and the old version's caches are removed on activation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import copy_client, make_users, new_page, web_settings, worker_ready
from tests.conftest import fresh_sqlite_url
from tests.support.appserver import AppServer

SHELL_CACHES = "caches.keys().then((keys) => keys.filter((k) => k.startsWith('vonix-shell-')))"


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

        with (static / "app.css").open("a") as css:
            css.write("\n/* a new release */\n")
        await page.evaluate("navigator.serviceWorker.getRegistration().then((r) => r.update())")
        await page.get_by_text("A new version of Vonix is ready.").wait_for(timeout=15000)
        async with page.expect_navigation():
            await page.get_by_role("button", name="Reload").click()
        deadline = time.monotonic() + 15
        while (caches := await page.evaluate(SHELL_CACHES)) == [old_cache] or len(caches) != 1:
            assert time.monotonic() < deadline, caches
            await asyncio.sleep(0.1)
        assert caches != [old_cache]
        await page.get_by_role("heading", name="Rooms").wait_for()
        assert await page.locator("#update").is_hidden()
        assert page.errors == []
