"""Helpers that drive the public account API the way a client would."""

from __future__ import annotations

from typing import Any

import httpx

PASSWORD = "correct horse battery staple 42"


async def register(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/auth/register", json={
        "username": username, "email": f"{username.lower()}@example.com", "password": password})
    assert response.status_code == 201, response.text
    return response.json()["user"]


async def login(client: httpx.AsyncClient, login_name: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/auth/login", json={"login": login_name, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def make_admin(server: Any, username: str) -> None:
    from server.db.queries import users

    db = server.resources.db
    user = await users.by_username(db, username)
    await users.update(db, user["id"], role="admin")
    await server.resources.auth.user_changed(user["id"])  # cached principals learn the new role


def totp_code(secret: str, steps: int = 0) -> str:
    """The authenticator app's code `steps` 30-second periods from now (negative: the past)."""
    import time

    import pyotp

    totp = pyotp.TOTP(secret)
    return totp.at(time.time() + steps * totp.interval)
