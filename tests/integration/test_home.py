"""The public home page's data (issue 18, "Public home page"): `GET /api/home` without signing in,
with only what everyone may see — a private group's event, a past event, a friends-only post and a
group's post never appear — and the same data inlined in the app shell of `/` and `/servers` as a
JSON block that stays inert whatever a server's name holds (`</script>`, `<!--`, U+2028)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from server.middleware.security_headers import CSP
from tests.support.accounts import make_admin
from tests.support.appserver import AppServer
from tests.support.community import people

BOOT = re.compile(r'<script type="application/json" id="boot">(.*?)</script>', re.DOTALL)
EVIL = "</script><script>alert(1)</script>"


def at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


async def event(client: httpx.AsyncClient, who: dict[str, Any], title: str, start: float,
                **fields: Any) -> dict[str, Any]:
    return await created(await client.post("/api/events", json={
        "title": title, "starts_at": at(start), "ends_at": at(start + 2), **fields}, headers=who["headers"]))


async def post(client: httpx.AsyncClient, who: dict[str, Any], content: str, **fields: Any) -> dict[str, Any]:
    return await created(await client.post("/api/posts", json={"content": content, **fields}, headers=who["headers"]))


async def test_home_is_public_and_shows_only_what_everyone_may_see(app_server: AppServer) -> None:
    async with app_server.client() as client:
        crowd = await people(client, "alice", "bob")
        alice = crowd["alice"]
        await make_admin(app_server, "alice")
        server = await created(await client.post("/api/admin/servers", json={
            "name": "Survival", "host": "127.0.0.1", "port": 25599, "edition": "java"}, headers=alice["headers"]))

        public = await created(await client.post("/api/groups", json={"name": "Builders"}, headers=alice["headers"]))
        secret = await created(await client.post("/api/groups", json={"name": "Secret Club", "visibility": "private"},
                                                 headers=alice["headers"]))
        await event(client, alice, "Build contest", 3, group_id=public["id"])
        await event(client, alice, "Server anniversary", 5)
        await event(client, alice, "Secret meeting", 1, group_id=secret["id"])
        await event(client, alice, "Already over", -5)
        for n in range(5):
            await event(client, alice, f"Later {n}", 48 + n)  # six upcoming public ones: the first five show
        await post(client, alice, "Hello everyone")
        await post(client, alice, "Only for friends", visibility="friends")
        await post(client, alice, "In the group", group_id=public["id"])
        await post(client, alice, "In the secret club", group_id=secret["id"])

        response = await client.get("/api/home")  # no credentials at all
        assert response.status_code == 200, response.text
        home = response.json()
        assert [s["name"] for s in home["servers"]] == ["Survival"] and home["servers"][0]["id"] == server["id"]
        titles = [e["title"] for e in home["events"]]
        assert titles == ["Build contest", "Server anniversary", "Later 0", "Later 1", "Later 2"], titles
        assert all(e["my_status"] is None for e in home["events"])
        assert [p["content"] for p in home["posts"]] == ["Hello everyone"]
        assert home["posts"][0]["author"]["username"] == "alice" and home["posts"][0]["can_delete"] is False
        assert home["status"]["channel"] == "status:servers" and isinstance(home["status"]["offset"], int)
        assert home["status"]["epoch"] and datetime.fromisoformat(home["at"]).tzinfo is not None

        # a signed-in member gets the same public answer (nothing personal is cached in it)
        as_bob = (await client.get("/api/home", headers=crowd["bob"]["headers"])).json()
        assert [p["content"] for p in as_bob["posts"]] == ["Hello everyone"]
        assert [e["title"] for e in as_bob["events"]] == titles


async def test_the_shell_inlines_the_home_data_inert(app_server: AppServer) -> None:
    async with app_server.client() as client:
        alice = (await people(client, "alice"))["alice"]
        await make_admin(app_server, "alice")
        name = f"{EVIL}<!-- &"
        description = "<img src=x onerror=alert(1)> line\u2028separator\u2029paragraph"
        server = await created(await client.post("/api/admin/servers", json={
            "name": name, "host": "127.0.0.1", "port": 25599, "edition": "java",
            "description": description}, headers=alice["headers"]))

        computed = set()
        for path in ("/", "/servers", f"/servers/{server['id']}"):
            response = await client.get(path)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            assert response.headers["content-security-policy"] == CSP  # strict as ever: no inline script allowed
            assert response.headers["cache-control"] == "no-cache"
            page = response.text
            blocks = BOOT.findall(page)
            assert len(blocks) == 1, path
            raw = blocks[0]
            # nothing in the block can end it, open a comment or break a line for old parsers
            assert "<" not in raw and ">" not in raw and "&" not in raw and "\u2028" not in raw and "\u2029" not in raw
            assert "alert(1)</script>" not in page and "<script>alert" not in page
            boot = json.loads(raw)
            # the JSON still says exactly what the server holds
            assert boot["servers"][0]["name"] == server["name"] == name
            assert boot["servers"][0]["description"] == server["description"]
            assert "\u2028" in server["description"]
            assert set(boot) >= {"servers", "events", "posts", "status", "at"}
            computed.add(boot["at"])
            # the rest of the shell is the plain one: the app's module script and nothing inline
            scripts = re.findall(r"<script\b[^>]*>", page)
            assert scripts == ['<script type="module" src="/static/js/app.js">',
                               '<script type="application/json" id="boot">'], scripts

        assert len(computed) == 1  # computed once for the three pages (cached a few seconds), not per request

        other = await client.get("/rooms")  # a member's screen: no home data inlined
        assert other.status_code == 200 and "id=\"boot\"" not in other.text
        assert html.escape(EVIL) not in other.text
