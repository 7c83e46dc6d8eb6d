"""Browser tests: Debian's Chromium, headless, driven by Playwright against a real server.

Chromium comes from apt (`scripts/ensure-test-binaries.sh` installs it; `make test` runs that);
Playwright's own browser download is never used. Without /usr/bin/chromium these tests skip with
that reason. Screenshots go to artifacts/screenshots/; when a test fails, every page still open is
photographed there too (`failed-<test>-<n>.png`), so the state the assertion saw is kept.

The server runs with its default rate limits: a member's normal use must never meet them. Every
page made by `new_page` records what went wrong in it: uncaught errors (`page.errors`), console
errors (`page.console_errors`), requests that failed (`page.failed_requests`) and responses with
a status >= 400 (`page.bad_responses`); `problems(page)` sums them up for an assertion.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
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
BROWSERS: list[Any] = []  # the browsers open in this test (for the screenshots on failure)


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install chromium; make test installs it)")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep each phase's report on the test item, so fixtures can tell a failed test at teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


async def screenshot_open_pages(launched: Any, name: str) -> list[Path]:
    """Photograph every page still open in the browser (after a failure: what the test saw)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:120]
    saved: list[Path] = []
    for context in launched.contexts:
        for page in context.pages:
            if page.is_closed():
                continue
            path = SCREENSHOTS / f"failed-{slug}-{len(saved) + 1}.png"
            try:
                await page.screenshot(path=str(path), timeout=5000)
                saved.append(path)
            except Exception:  # a crashed page must not hide the test's own failure
                continue
    return saved


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        BROWSERS.append(launched)
        try:
            yield launched
        finally:
            BROWSERS.remove(launched)
            await screenshot_if_failed(request, launched)
            await launched.close()


async def screenshot_if_failed(request: pytest.FixtureRequest, launched: Any) -> None:
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not getattr(request.node, "screenshots_taken", False):
        request.node.screenshots_taken = True
        await screenshot_open_pages(launched, request.node.name)


def web_settings(database_url: str, **overrides: Any) -> Any:
    """Browser tests run with the default rate limits (HTTP and websocket): normal use must fit."""
    values = {"DATABASE_URL": database_url, "VAPID_PUBLIC_KEY": VAPID_PUBLIC, "VAPID_PRIVATE_KEY": VAPID_PRIVATE,
              "MAINTENANCE_ENABLED": False, **overrides}
    return make_settings(**values)


@pytest.fixture
async def web(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    """The app on embedded SQLite (browser tests cover the client; the backends are covered elsewhere)."""
    async with AppServer(web_settings(fresh_sqlite_url(sqlite_template, tmp_path))) as server:
        yield server
        for launched in list(BROWSERS):  # photographed while the server still runs
            await screenshot_if_failed(request, launched)


async def make_users(server: AppServer, *names: str) -> None:
    async with server.client() as client:
        for name in names:
            await register(client, name)


async def new_page(browser: Any, server_url: str, *, viewport: dict[str, int] | None = None,
                   username: str | None = None, **context_options: Any) -> Any:
    """A fresh context (its own cookies and storage); signed in through the API when `username` is given."""
    context = await browser.new_context(base_url=server_url, viewport=viewport or DESKTOP, **context_options)
    page = await context.new_page()
    watch(page)
    if username:
        response = await context.request.post("/api/auth/login", data={"login": username, "password": PASSWORD,
                                                                       "mode": "cookie"})
        assert response.ok, await response.text()
    return page


def watch(page: Any) -> Any:
    """Record what goes wrong in a page: uncaught errors, console errors, failed requests, 4xx/5xx."""
    page.errors = []
    page.console_errors = []
    page.failed_requests = []
    page.bad_responses = []
    page.requests = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: page.console_errors.append(message.text) if message.type == "error" else None)
    def on_failed(request: Any) -> None:
        # A picture the browser itself stops loading (the page navigated on, or the element left
        # the screen before its bytes came) is nothing a member sees; nor is the tab's favicon,
        # which Chromium fetches on its own and drops on navigation. A picture that fails for real
        # answers 4xx/5xx (counted below) or another net:: error (counted here), and every aborted
        # fetch, script, style or navigation still counts.
        if request.failure == "net::ERR_ABORTED" and (
                request.resource_type == "image" or "/static/icons/favicon" in request.url):
            return
        page.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    page.on("requestfailed", on_failed)
    page.on("request", lambda request: page.requests.append(f"{request.method} {request.url}"))

    def on_response(response: Any) -> None:
        if response.status >= 400:
            page.bad_responses.append(f"{response.status} {response.request.method} {response.url}")

    page.on("response", on_response)
    return page


def problems(page: Any) -> dict[str, list[str]]:
    """Everything that went wrong in a page (empty lists when nothing did)."""
    return {"errors": list(page.errors), "console": list(page.console_errors),
            "failed": list(page.failed_requests), "status": list(page.bad_responses)}


def assert_clean(*pages: Any) -> None:
    for page in pages:
        found = problems(page)
        assert not any(found.values()), found


async def sign_in_with_form(page: Any, login: str, password: str = PASSWORD) -> None:
    """Fill and send the sign-in form the way a member does (the page is on /signin)."""
    await page.get_by_label("Username or email").fill(login)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


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


async def connected(page: Any) -> None:
    await page.locator('#conn[data-state="connected"]').wait_for()


async def server_json(page: Any, path: str) -> Any:
    """What the server says to this page's user (its cookies), outside the page's own requests."""
    response = await page.context.request.get(path)
    assert response.ok, f"{path}: {response.status} {await response.text()}"
    return await response.json()


async def eventually(check: Any, timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy (the last value on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)
