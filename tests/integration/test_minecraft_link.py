"""Accounts linked to the game (docs/plugins.md): server API keys (issued once, hashed, scoped,
listed with last use, revoked at once, websockets closed on every replica), link codes (format,
validation, one live code per player, single use, expiry), linking and unlinking with the 409s,
sign-up with a code, brute force rate limited and locked out, the plugin's "who is this UUID",
and a game server's bot speaking over the websocket making the server's online list exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.auth.tokens import hash_secret
from server.db.tables import audit_log
from server.db.tables_linking import mc_api_keys, mc_link_codes
from server.db.types import utcnow
from server.minecraft.linking import CODE_ALPHABET, normalise_uuid
from tests.conftest import make_settings
from tests.support.accounts import PASSWORD, bearer, make_admin
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.contract import assert_conforms
from tests.support.live import replicas
from tests.support.wsclient import WsClient

UUID = "069a79f4-44e9-4726-a5be-fca90e38aaf5"
UUID_2 = "853c80ef3c3749fdaa49938b674adae6"  # undashed: normalised


@pytest.fixture
async def server(backend: dict[str, Any]) -> AsyncIterator[AppServer]:
    async with AppServer(make_settings(**backend, MINECRAFT_AVATAR_URL="http://heads.test/{uuid}/{size}")) as app:
        yield app


async def setup(app: AppServer, client: httpx.AsyncClient, *names: str) -> dict[str, Any]:
    u = await people(client, "root", *names)
    await make_admin(app, "root")
    response = await client.post("/api/admin/servers", json={"name": "Survival", "host": "127.0.0.1", "port": 25565},
                                 headers=u["root"]["headers"])
    assert response.status_code == 201, response.text
    u["server"] = response.json()
    return u


async def issue_key(client: httpx.AsyncClient, admin: dict[str, str], server_id: int, name: str = "plugin") -> str:
    response = await client.post(f"/api/admin/servers/{server_id}/keys", json={"name": name}, headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


async def code_for(client: httpx.AsyncClient, key: str, name: str = "Steve", uuid: str = UUID) -> str:
    response = await client.post("/api/plugin/link-codes", json={"name": name, "uuid": uuid}, headers=bearer(key))
    assert response.status_code == 201, response.text
    answer = await assert_conforms(client, response, "POST", "/api/plugin/link-codes")
    assert (answer["name"], answer["uuid"]) == (name, normalise_uuid(uuid))
    return str(answer["code"])


def field_errors(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(d["field"], d["code"]) for d in response.json()["error"]["details"]}


async def test_keys_are_shown_once_hashed_listed_scoped_and_revoked(server: AppServer) -> None:
    async with server.client() as client:
        u = await setup(server, client, "bob")
        admin, sid = u["root"]["headers"], u["server"]["id"]
        assert (await client.post(f"/api/admin/servers/{sid}/keys", json={"name": "x"},
                                  headers=u["bob"]["headers"])).status_code == 403
        assert field_errors(await client.post(f"/api/admin/servers/{sid}/keys", json={"name": "  "}, headers=admin)) \
            == {("name", "value_error")}
        assert (await client.post("/api/admin/servers/999/keys", json={"name": "x"}, headers=admin)).status_code == 404
        created = await client.post(f"/api/admin/servers/{sid}/keys", json={"name": "Survival plugin"}, headers=admin)
        assert created.status_code == 201
        key = (await assert_conforms(client, created, "POST", "/api/admin/servers/{id}/keys"))["key"]
        assert key.startswith("vxs_") and created.json()["prefix"] == key[:8]
        rows = await server.resources.db.fetch_all("t", sa.select(mc_api_keys))
        assert [r["key_hash"] for r in rows] == [hash_secret(key)]  # only the hash is stored

        response = await client.get(f"/api/admin/servers/{sid}/keys", headers=admin)
        listed = (await assert_conforms(client, response, "GET", "/api/admin/servers/{id}/keys"))["keys"]
        assert [(k["name"], k["prefix"], k["last_used_at"], k["revoked"]) for k in listed] == \
            [("Survival plugin", key[:8], None, False)]
        assert "key" not in listed[0]

        # the plugin API: only with a key; the key says which server
        assert (await client.get(f"/api/plugin/players/{UUID}")).status_code == 401
        refused = await client.get(f"/api/plugin/players/{UUID}", headers=u["bob"]["headers"])
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "server_key_required"
        assert (await client.get(f"/api/plugin/players/{UUID}", headers=bearer("vxs_nope"))).status_code == 401
        answer = await client.get(f"/api/plugin/players/{UUID}", headers=bearer(key))
        assert answer.json() == {"linked": False, "user": None}
        await assert_conforms(client, answer, "GET", "/api/plugin/players/{uuid}")
        response = await client.get(f"/api/admin/servers/{sid}/keys", headers=admin)
        listed = (await assert_conforms(client, response, "GET", "/api/admin/servers/{id}/keys"))["keys"]
        assert listed[0]["last_used_at"] is not None
        await code_for(client, key)
        code_row = await server.resources.db.fetch_one("t", sa.select(mc_link_codes))
        assert code_row["server_id"] == sid

        # one bot per server, made with the first key; a second key signs in as the same bot
        second = await issue_key(client, admin, sid, "backup")
        ws1, ws2 = await WsClient.connect(server.base_url, key), await WsClient.connect(server.base_url, second)
        me1, me2 = (await ws1.request("ping")), (await ws2.request("ping"))
        assert me1["ok"] and me2["ok"]
        await ws1.close()
        await ws2.close()

        revoked = await client.delete(f"/api/admin/servers/{sid}/keys/{listed[0]['id']}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        revoked_key = await assert_conforms(client, revoked, "DELETE", "/api/admin/servers/{id}/keys/{key_id}")
        assert revoked_key["id"] == listed[0]["id"] and revoked_key["revoked_at"] is not None
        assert (await client.get(f"/api/plugin/players/{UUID}", headers=bearer(key))).status_code == 401
        assert (await client.get(f"/api/plugin/players/{UUID}", headers=bearer(second))).status_code == 200
        assert (await client.delete(f"/api/admin/servers/{sid}/keys/99999", headers=admin)).status_code == 404
        actions = {r["action"] for r in await server.resources.db.fetch_all("t", sa.select(audit_log.c.action))}
        assert {"mc_key.issued", "mc_key.revoked"} <= actions


async def test_revoking_closes_the_keys_websocket_on_every_replica(backend: dict[str, Any]) -> None:
    async with replicas(backend) as (a, b), a.client() as client:
        u = await setup(a, client)
        key = await issue_key(client, u["root"]["headers"], u["server"]["id"])
        ws = await WsClient.connect(b.base_url, key)
        assert (await ws.request("subscribe", channel="room:general"))["ok"]
        key_id = (await client.get(f"/api/admin/servers/{u['server']['id']}/keys",
                                   headers=u["root"]["headers"])).json()["keys"][0]["id"]
        await client.delete(f"/api/admin/servers/{u['server']['id']}/keys/{key_id}", headers=u["root"]["headers"])
        assert await ws.close_code(8) == 4003
        refused = await WsClient.connect(b.base_url)
        reply = await refused.request("auth", token=key)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_token"
        await refused.close()


async def test_link_codes_validate_replace_and_link_once(server: AppServer) -> None:
    async with server.client() as client:
        u = await setup(server, client, "bob", "carol")
        key = await issue_key(client, u["root"]["headers"], u["server"]["id"])
        bad = await client.post("/api/plugin/link-codes", json={"name": "St", "uuid": "xyz"}, headers=bearer(key))
        assert field_errors(bad) == {("name", "value_error"), ("uuid", "value_error")}
        assert field_errors(await client.post("/api/plugin/link-codes", json={"name": "Ste ve", "uuid": UUID,
                                                                              "x": 1}, headers=bearer(key))) \
            == {("name", "value_error"), ("x", "extra_forbidden")}

        first = await code_for(client, key)
        assert len(first) == 6 and set(first) <= set(CODE_ALPHABET)
        code = await code_for(client, key)  # a new request replaces the old code
        bob = u["bob"]["headers"]
        stale = await client.post("/api/minecraft/link", json={"code": first}, headers=bob)
        assert stale.status_code == 422 and stale.json()["error"]["details"][0]["code"] == "invalid_code"

        linked = await client.post("/api/minecraft/link", json={"code": code.lower()}, headers=bob)
        assert linked.status_code == 200, linked.text
        assert linked.json() == {"linked": True, "minecraft": {"name": "Steve", "uuid": UUID,
                                                              "head": f"http://heads.test/{UUID}/64"}}
        await assert_conforms(client, linked, "POST", "/api/minecraft/link")
        status = await client.get("/api/minecraft/link", headers=bob)
        assert (await assert_conforms(client, status, "GET", "/api/minecraft/link")) == linked.json()
        profile = (await client.get("/api/users/bob", headers=bob)).json()
        assert profile["minecraft"] == {"name": "Steve", "uuid": UUID}
        answer = (await client.get(f"/api/plugin/players/{UUID.replace('-', '').upper()}", headers=bearer(key))).json()
        assert answer == {"linked": True, "user": {"id": u["bob"]["id"], "username": "bob"}}
        # with a rank, the plugin gets it too (to show it in game)
        rank = (await client.post("/api/admin/ranks", json={"name": "Gold", "colour": "#FFD700", "badge": "G"},
                                  headers=u["root"]["headers"])).json()
        assert (await client.put("/api/admin/users/bob/rank", json={"rank_id": rank["id"]},
                                 headers=u["root"]["headers"])).status_code == 200
        ranked = await client.get(f"/api/plugin/players/{UUID}", headers=bearer(key))
        assert (await assert_conforms(client, ranked, "GET", "/api/plugin/players/{uuid}"))["user"]["rank"] == {
            "name": "Gold", "colour": "#ffd700", "badge": "G"}

        again = await client.post("/api/minecraft/link", json={"code": code}, headers=u["carol"]["headers"])
        assert again.status_code == 422  # single use

        # the UUID is bob's: carol gets a 409 that says what to do
        taken = await client.post("/api/minecraft/link", json={"code": await code_for(client, key)},
                                  headers=u["carol"]["headers"])
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "minecraft_taken"
        assert "unlink" in taken.json()["error"]["message"]
        # bob is linked already: another player's code is a 409 too
        other = await code_for(client, key, "Alex", UUID_2)
        busy = await client.post("/api/minecraft/link", json={"code": other}, headers=bob)
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "already_linked"
        assert "Unlink" in busy.json()["error"]["message"]
        # an expired code is refused
        past = utcnow() - timedelta(seconds=1)
        await server.resources.db.execute("t", mc_link_codes.update().values(expires_at=past))
        expired = await client.post("/api/minecraft/link", json={"code": other}, headers=u["carol"]["headers"])
        assert expired.status_code == 422

        unlinked = await client.delete("/api/minecraft/link", headers=bob)
        assert unlinked.json() == {"linked": False, "minecraft": None}
        await assert_conforms(client, unlinked, "DELETE", "/api/minecraft/link")
        assert (await client.get(f"/api/plugin/players/{UUID}", headers=bearer(key))).json()["linked"] is False
        assert (await client.get("/api/minecraft/link", headers=bob)).json()["linked"] is False
        relinked = await client.post("/api/minecraft/link", json={"code": await code_for(client, key)},
                                     headers=u["carol"]["headers"])
        assert relinked.status_code == 200
        actions = [r["action"] for r in await server.resources.db.fetch_all("t", sa.select(audit_log.c.action))]
        assert actions.count("minecraft.linked") == 2 and "minecraft.unlinked" in actions


async def test_signing_up_with_a_code(server: AppServer) -> None:
    async with server.client() as client:
        u = await setup(server, client)
        key = await issue_key(client, u["root"]["headers"], u["server"]["id"])
        code = await code_for(client, key, "Notch_1", UUID)
        check = await client.post("/api/minecraft/codes/check", json={"code": code})
        assert check.status_code == 200
        await assert_conforms(client, check, "POST", "/api/minecraft/codes/check")
        assert check.json() | {"expires_at": None} == {"name": "Notch_1", "uuid": UUID, "username": "Notch_1",
                                                        "linked": False, "expires_at": None}
        weak = await client.post("/api/minecraft/signup", json={"code": code, "email": "n@example.com",
                                                                 "password": "short"})
        assert field_errors(weak) == {("password", weak.json()["error"]["details"][0]["code"])}
        made = await client.post("/api/minecraft/signup", json={"code": code, "email": "n@example.com",
                                                                 "password": PASSWORD})
        assert made.status_code == 201, made.text
        assert made.json()["user"]["username"] == "Notch_1"
        user = (await assert_conforms(client, made, "POST", "/api/minecraft/signup"))["user"]
        assert (user["minecraft_uuid"], user["email"], user["email_verified"]) == (UUID, "n@example.com", False)
        login = await client.post("/api/auth/login", json={"login": "Notch_1", "password": PASSWORD})
        me = bearer(login.json()["access_token"])
        assert (await client.get("/api/minecraft/link", headers=me)).json()["minecraft"]["name"] == "Notch_1"
        spent = await client.post("/api/minecraft/signup", json={"code": code, "email": "m@example.com",
                                                                  "password": PASSWORD, "username": "other"})
        assert spent.status_code == 422
        # a name that is taken is not suggested; the player picks another username
        code = await code_for(client, key, "root", UUID_2)
        assert (await client.post("/api/minecraft/codes/check", json={"code": code})).json()["username"] is None
        taken = await client.post("/api/minecraft/signup", json={"code": code, "email": "r@example.com",
                                                                  "password": PASSWORD})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "username_taken"
        made = await client.post("/api/minecraft/signup", json={"code": code, "email": "r@example.com",
                                                                 "password": PASSWORD, "username": "root_mc"})
        assert made.status_code == 201, made.text


async def test_wrong_codes_lock_linking_out(server: AppServer) -> None:
    async with server.client() as client:
        u = await setup(server, client, "bob", "carol")
        key = await issue_key(client, u["root"]["headers"], u["server"]["id"])
        code = await code_for(client, key)
        bob = u["bob"]["headers"]
        for guess in ("AAAAAA", "BBBBBB", "CCCCCC", "DDDDDD", "zzz"):
            assert (await client.post("/api/minecraft/link", json={"code": guess}, headers=bob)).status_code == 422
        locked = await client.post("/api/minecraft/link", json={"code": code}, headers=bob)
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "link_locked"
        assert int(locked.headers["Retry-After"]) > 60
        # another member is not locked by bob's guesses
        assert (await client.post("/api/minecraft/link", json={"code": code},
                                  headers=u["carol"]["headers"])).status_code == 200


async def test_tries_are_rate_limited_per_member(backend: dict[str, Any]) -> None:
    async with AppServer(make_settings(**backend, LOCKOUT_THRESHOLD=100, IP_FAILURE_LIMIT=100)) as app, \
            app.client() as client:
        u = await setup(app, client, "bob")
        for _ in range(10):
            response = await client.post("/api/minecraft/link", json={"code": "AAAAAA"}, headers=u["bob"]["headers"])
            assert response.status_code == 422
        limited = await client.post("/api/minecraft/link", json={"code": "AAAAAA"}, headers=u["bob"]["headers"])
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert "Retry-After" in limited.headers


async def servers_now(client: httpx.AsyncClient, sid: int) -> dict[str, Any]:
    listed = (await client.get("/api/servers")).json()["servers"]
    return next(s for s in listed if s["id"] == sid)


async def exact_players(client: httpx.AsyncClient, sid: int, want: list[str], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = (await servers_now(client, sid))["status"] or {}
        players = status.get("players") or {}
        if players.get("exact") and players.get("sample") == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"players never became {want}: {status}")
        await asyncio.sleep(0.1)


async def test_the_bots_join_and_leave_make_the_list_exact(backend: dict[str, Any]) -> None:
    async with replicas(backend) as (a, b), a.client() as client, b.client() as other:
        u = await setup(a, client)
        sid = u["server"]["id"]
        key = await issue_key(client, u["root"]["headers"], sid)
        listed = await other.put("/api/plugin/players", json={"players": ["Alex", "Steve"]}, headers=bearer(key))
        assert listed.status_code == 200
        assert await assert_conforms(other, listed, "PUT", "/api/plugin/players") == {"players": ["Alex", "Steve"]}
        await exact_players(client, sid, ["Alex", "Steve"])
        assert field_errors(await other.put("/api/plugin/players", json={"players": ["no way"]},
                                            headers=bearer(key))) == {("players.0", "value_error")}
        ws = await WsClient.connect(b.base_url, key)
        for data in ({"text": "Herobrine joined the game", "via": {"source": "game", "name": "Herobrine"},
                      "system": "join"},
                     {"text": "Alex left the game", "via": {"source": "game", "name": "Alex"}, "system": "leave"},
                     {"text": "hello", "via": {"source": "game", "name": "Steve"}}):
            reply = await ws.request("publish", channel="room:general", data=data)
            assert reply["ok"], reply
        await exact_players(client, sid, ["Steve", "Herobrine"])
        await ws.close()  # the bridge went away: back to the poll's own samples
        deadline = time.monotonic() + 8
        while ((await servers_now(client, sid))["status"] or {}).get("players", {}).get("exact"):
            assert time.monotonic() < deadline, "the list stayed exact after the bridge left"
            await asyncio.sleep(0.1)


async def test_codes_for_one_player_are_rate_limited(server: AppServer) -> None:
    async with server.client() as client:
        u = await setup(server, client)
        key = await issue_key(client, u["root"]["headers"], u["server"]["id"])
        for _ in range(6):
            await code_for(client, key)
        limited = await client.post("/api/plugin/link-codes", json={"name": "Steve", "uuid": UUID}, headers=bearer(key))
        assert limited.status_code == 429 and "Retry-After" in limited.headers
        await code_for(client, key, "Alex", UUID_2)  # another player is not held up


async def test_closing_a_server_revokes_its_keys_and_closes_the_bridge(server: AppServer) -> None:
    async with server.client() as client:
        u = await setup(server, client)
        sid = u["server"]["id"]
        key = await issue_key(client, u["root"]["headers"], sid)
        ws = await WsClient.connect(server.base_url, key)
        assert (await ws.request("ping"))["ok"]
        assert (await client.delete(f"/api/admin/servers/{sid}", headers=u["root"]["headers"])).status_code == 204
        assert await ws.close_code(8) == 4003
        assert (await client.get(f"/api/plugin/players/{UUID}", headers=bearer(key))).status_code == 401
