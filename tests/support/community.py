"""Helpers for tests about people talking: sign several users up, post as one of them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.accounts import bearer, login, register


async def people(client: httpx.AsyncClient, *names: str) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        user = await register(client, name)
        out[name] = {"id": user["id"], "headers": bearer((await login(client, name))["access_token"])}
    return out


async def say(client: httpx.AsyncClient, who: dict[str, Any], channel: str, data: dict[str, Any],
              nonce: str | None = None) -> int:
    body: dict[str, Any] = {"data": data}
    if nonce:
        body["nonce"] = nonce
    response = await client.post(f"/api/channels/{channel}/messages", json=body, headers=who["headers"])
    assert response.status_code == 201, response.text
    return int(response.json()["offset"])
