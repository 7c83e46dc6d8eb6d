"""Every admin route answers 403 to a member and 401 to anonymous callers.

The routes are enumerated from the app (any route under /api/admin, or any endpoint declaring an
`admin.*` permission), never listed by hand, so a new unguarded admin route fails here.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from tests.support.accounts import bearer, login, make_admin, register
from tests.support.appserver import AppServer
from tests.support.contract import assert_conforms


def admin_routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if not isinstance(route, Route):
            continue
        permission = getattr(route.endpoint, "__vonix_permission__", "")
        if route.path.startswith("/api/admin") or permission.startswith("admin."):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, re.sub(r"\{[^}]+\}", "1", route.path)))
    return found


async def test_admin_routes_are_guarded(auth_server: AppServer) -> None:
    routes = admin_routes(auth_server.app)
    assert len(routes) >= 3
    for route in auth_server.app.routes:
        if isinstance(route, Route) and route.path.startswith("/api/admin"):
            assert getattr(route.endpoint, "__vonix_permission__", "").startswith("admin."), route.path

    async with auth_server.client() as client:
        await register(client, "Member_Mia")
        member = bearer((await login(client, "member_mia"))["access_token"])
        await register(client, "Admin_Ada")
        await make_admin(auth_server, "Admin_Ada")
        admin = bearer((await login(client, "admin_ada"))["access_token"])
        for method, path in routes:
            anonymous = await client.request(method, path, json={})
            forbidden = await client.request(method, path, json={}, headers=member)
            assert anonymous.status_code == 401, (method, path)
            assert anonymous.json()["error"]["code"] == "unauthorized"
            assert forbidden.status_code == 403, (method, path)
            allowed = await client.request(method, path, json={"name": "probe_bot"}, headers=admin)
            assert allowed.status_code not in (401, 403), (method, path, allowed.text)


async def test_admin_db_report_and_audit(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Root_Ro")
        await make_admin(auth_server, "Root_Ro")
        admin = bearer((await login(client, "root_ro"))["access_token"])
        report = await assert_conforms(client, await client.get("/api/admin/db", headers=admin),
                                       "GET", "/api/admin/db")
        audit = await assert_conforms(client, await client.get("/api/admin/audit?limit=100", headers=admin),
                                      "GET", "/api/admin/audit")
    assert report["pool"]["size"] >= 1
    assert {t["name"] for t in report["tables"]} >= {"users", "messages", "sessions"}
    assert report["slowest_queries"] and "query" in report["slowest_queries"][0]
    if report["dialect"] == "postgresql":
        assert isinstance(report["unused_indexes"], list)
        assert any(i["name"] == "uq_messages_channel_id_offset" for i in report["indexes"])
    actions = {e["action"] for e in audit["entries"]}
    assert {"user.registered", "session.created"} <= actions


async def test_bot_token_works_as_bearer(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Bot_Master")
        await make_admin(auth_server, "Bot_Master")
        admin = bearer((await login(client, "bot_master"))["access_token"])
        created = await client.post("/api/admin/bots", json={"name": "echo_bot", "scopes": ["publish"]},
                                    headers=admin)
        assert created.status_code == 201
        assert (await assert_conforms(client, created, "POST", "/api/admin/bots"))["scopes"] == ["publish"]
        token = created.json()["token"]
        assert token.startswith("vxb_")
        me = await client.get("/api/auth/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["username"] == "echo_bot" and me.json()["role"] == "bot"
        bad_scope = await client.post("/api/admin/bots", json={"name": "evil", "scopes": ["root"]}, headers=admin)
        assert bad_scope.status_code == 422
        dup = await client.post("/api/admin/bots", json={"name": "ECHO_BOT"}, headers=admin)
        assert dup.status_code == 409
        bot_as_admin = await client.get("/api/admin/audit", headers=bearer(token))
        assert bot_as_admin.status_code == 403
    from sqlalchemy import text

    stored = await auth_server.resources.db.fetch_val("test.hash", text("SELECT token_hash FROM bot_tokens"))
    assert token not in stored and len(stored) == 64
