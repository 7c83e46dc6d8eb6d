"""Browser tests: Debian's Chromium, headless, driven by Playwright against a real server.

Chromium comes from apt (`scripts/ensure-test-binaries.sh` installs it; `make test` runs that);
Playwright's own browser download is never used. Without /usr/bin/chromium these tests skip with
that reason. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.push.vapid import generate
from tests.conftest import fresh_sqlite_url, make_settings
from tests.support.accounts import PASSWORD, register
from tests.support.appserver import AppServer

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
VAPID_PUBLIC, VAPID_PRIVATE = generate()


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium; make test installs it)")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def web_settings(database_url: str, **overrides: Any) -> Any:
    values = {"DATABASE_URL": database_url, "VAPID_PUBLIC_KEY": VAPID_PUBLIC, "VAPID_PRIVATE_KEY": VAPID_PRIVATE,
              "MAINTENANCE_ENABLED": False, "WS_PUBLISH_BURST": 100,
              # A browser session makes many API calls as one user; the limits have their own tests.
              "RATE_LIMIT_ENABLED": False, **overrides}
    return make_settings(**values)


@pytest.fixture
async def web(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    """The app on embedded SQLite (browser tests cover the client; the backends are covered elsewhere)."""
    async with AppServer(web_settings(fresh_sqlite_url(sqlite_template, tmp_path))) as server:
        yield server


async def make_users(server: AppServer, *names: str) -> None:
    async with server.client() as client:
        for name in names:
            await register(client, name)


async def new_page(browser: Any, server_url: str, *, viewport: dict[str, int] | None = None,
                   username: str | None = None, **context_options: Any) -> Any:
    """A fresh context (its own cookies and storage); signed in through the API when `username` is given."""
    context = await browser.new_context(base_url=server_url, viewport=viewport or DESKTOP, **context_options)
    page = await context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    if username:
        response = await context.request.post("/api/auth/login", data={"login": username, "password": PASSWORD,
                                                                       "mode": "cookie"})
        assert response.ok, await response.text()
    return page


async def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


async def worker_ready(page: Any, timeout: float = 15.0) -> None:
    """Wait until the service worker controls the page (installed, activated, claimed).

    Polled with `evaluate`: `wait_for_function` compiles its expression with eval, which the
    app's CSP (script-src 'self') rightly refuses.
    """
    deadline = time.monotonic() + timeout
    while not await page.evaluate("navigator.serviceWorker.controller !== null"):
        assert time.monotonic() < deadline, "the service worker never took control"
        await asyncio.sleep(0.05)


def copy_client(tmp_path: Path) -> Path:
    """A private copy of static/ and sw/ (for tests that change the client while it runs)."""
    target = tmp_path / "client"
    shutil.copytree(ROOT / "static", target / "static")
    shutil.copytree(ROOT / "sw", target / "sw")
    return target / "static"


async def registration_id(page: Any, cdp: Any) -> str:
    """The page origin's service worker registration id, as the DevTools protocol names it."""
    origin = "/".join(page.url.split("/", 3)[:3])
    found: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda event: found.extend(event["registrations"]))
    await cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for registration in found:
            if registration["scopeURL"].rstrip("/") == origin and not registration["isDeleted"]:
                return str(registration["registrationId"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"no service worker registration: {found}")
