"""CORS: only origins in ALLOWED_ORIGINS may call the API from another site."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_settings
from tests.support.appserver import AppServer


async def test_cors_allowlist(backend: dict[str, Any]) -> None:
    settings = make_settings(ALLOWED_ORIGINS="https://play.vonix.example", **backend)
    async with AppServer(settings) as server, server.client() as client:
        preflight = await client.options("/api/auth/login", headers={
            "Origin": "https://play.vonix.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-csrf-token"})
        foreign = await client.options("/api/auth/login", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        simple = await client.get("/api/health", headers={"Origin": "https://play.vonix.example"})
        other = await client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://play.vonix.example"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "x-csrf-token" in preflight.headers["access-control-allow-headers"].lower()
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    assert simple.headers["access-control-allow-origin"] == "https://play.vonix.example"
    assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_by_default(app_server: AppServer) -> None:
    async with app_server.client() as client:
        response = await client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
