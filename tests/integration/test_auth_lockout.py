"""Lockout: five failures lock an account (even against the right password), unknown names answer
the same, the lock lifts after the window, and an IP that fails too often is locked out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from server.db.tables import notifications
from tests.conftest import make_settings
from tests.support.accounts import PASSWORD, register
from tests.support.appserver import AppServer

LOCK_SECONDS = 6


@pytest.fixture
async def lockout_server(backend: dict[str, Any]) -> AppServer:
    # Long enough that ten slow password checks on a loaded machine finish inside the lock.
    settings = make_settings(LOCKOUT_DURATION=LOCK_SECONDS, IP_FAILURE_LIMIT=12, **backend)
    async with AppServer(settings) as server:
        yield server


async def attempt(client: Any, name: str, password: str) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/auth/login", json={"login": name, "password": password})
    return response.status_code, response.json()


async def test_account_locks_and_unknown_accounts_look_the_same(lockout_server: AppServer) -> None:
    async with lockout_server.client() as client:
        await register(client, "Target")
        known = [await attempt(client, "target", "wrong password 1") for _ in range(5)]
        locked_at = asyncio.get_running_loop().time()
        unknown = [await attempt(client, "nobody_here", "wrong password 1") for _ in range(5)]
        known_locked = await attempt(client, "target", PASSWORD)
        unknown_locked = await attempt(client, "nobody_here", "anything at all")

        def shape(result: tuple[int, dict[str, Any]]) -> tuple[int, str, str]:
            status, body = result
            return status, body["error"]["code"], body["error"]["message"]

        assert [shape(r) for r in known] == [shape(r) for r in unknown]
        assert shape(known[0])[:2] == (401, "invalid_credentials")
        assert shape(known_locked) == shape(unknown_locked)
        assert shape(known_locked)[:2] == (429, "account_locked")

        user_id = (await lockout_server.resources.db.fetch_one(
            "test.user", sa.text("SELECT id FROM users WHERE username = 'Target'")))["id"]
        notes = await lockout_server.resources.db.fetch_all("test.notes", sa.select(notifications).where(
            notifications.c.user_id == user_id))
        assert [n["kind"] for n in notes] == ["account_locked"]

        await asyncio.sleep(max(0.0, locked_at + LOCK_SECONDS + 0.2 - asyncio.get_running_loop().time()))
        status, body = await attempt(client, "target", PASSWORD)
        assert status == 200 and "access_token" in body


async def test_ip_is_locked_after_many_failures(lockout_server: AppServer) -> None:
    async with lockout_server.client() as client:
        await register(client, "Innocent")
        for i in range(12):  # different names, so no account lock: only the IP limit applies
            await attempt(client, f"spray_{i}", "wrong password 1")
        status, body = await attempt(client, "innocent", PASSWORD)
    assert status == 429 and body["error"]["code"] == "account_locked"
