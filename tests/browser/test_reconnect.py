"""Acceptance 6: the server is killed (SIGKILL) while a page is open; the page says it is
reconnecting, and once a server is back it recovers what was sent meanwhile (through `since`)
and sends what its user wrote meanwhile, each message exactly once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import VAPID_PRIVATE, VAPID_PUBLIC, new_page, screenshot
from tests.conftest import fresh_sqlite_url
from tests.support.accounts import PASSWORD
from tests.support.replica import Replica


def post(base: str, token: str, text: str) -> None:
    response = httpx.post(f"{base}/api/channels/room:general/messages", json={"data": {"text": text}},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 201, response.text


def token_for(base: str, name: str) -> str:
    response = httpx.post(f"{base}/api/auth/login", json={"login": name, "password": PASSWORD}, timeout=10)
    return str(response.json()["access_token"])


async def test_page_recovers_after_the_server_is_killed(browser: Any, sqlite_template: Path, tmp_path: Path) -> None:
    env = {"DATABASE_URL": fresh_sqlite_url(sqlite_template, tmp_path), "MAINTENANCE_ENABLED": "false",
           "RATE_LIMIT_ENABLED": "false", "VAPID_PUBLIC_KEY": VAPID_PUBLIC, "VAPID_PRIVATE_KEY": VAPID_PRIVATE}
    first = await asyncio.to_thread(Replica(env, log_path=tmp_path / "first.log").start)
    replacement: Replica | None = None
    try:
        for name in ("alice", "bob"):
            httpx.post(f"{first.base_url}/api/auth/register", json={
                "username": name, "email": f"{name}@example.com", "password": PASSWORD}, timeout=10)
        post(first.base_url, token_for(first.base_url, "bob"), "before the crash")
        page = await new_page(browser, first.base_url, username="alice")
        await page.goto("/rooms/general")
        await page.locator('#conn[data-state="connected"]').wait_for()
        await page.locator(".msg .text", has_text="before the crash").wait_for()

        first.signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)
        await page.locator('#conn[data-state="reconnecting"]').wait_for()
        assert await page.locator("#conn").inner_text() == "Reconnecting…"
        await screenshot(page, "reconnecting-desktop")
        box = page.get_by_role("textbox", name="Message # general")
        await box.fill("alice wrote this while the server was down")
        await box.press("Enter")
        await page.locator(".msg.pending", has_text="while the server was down").wait_for()

        # Meanwhile another replica on the same database takes messages the page never saw.
        other = await asyncio.to_thread(Replica(env, log_path=tmp_path / "other.log").start)
        try:
            bob = token_for(other.base_url, "bob")
            for i in range(3):
                post(other.base_url, bob, f"sent meanwhile {i}")
        finally:
            other.stop()

        replacement = await asyncio.to_thread(Replica(env, port=first.port, log_path=tmp_path / "second.log").start)
        await page.locator('#conn[data-state="connected"]').wait_for(timeout=25000)
        for i in range(3):
            await page.locator(".msg .text", has_text=f"sent meanwhile {i}").wait_for()
        await page.locator(".msg:not(.pending) .text", has_text="while the server was down").wait_for()
        await asyncio.sleep(0.5)
        texts = await page.locator(".msg .text").all_inner_texts()
        assert texts == ["before the crash", "sent meanwhile 0", "sent meanwhile 1", "sent meanwhile 2",
                         "alice wrote this while the server was down"], texts
        stored = httpx.get(f"{replacement.base_url}/api/channels/room:general/messages?limit=50",
                           headers={"Authorization": f"Bearer {token_for(replacement.base_url, 'bob')}"}).json()
        assert [m["data"]["text"] for m in stored["messages"]] == texts
        assert page.errors == []
    finally:
        first.stop()
        if replacement is not None:
            replacement.stop()
