"""Game servers and their live status (docs/minecraft.md), against stand-in Minecraft servers
(tests/support/mc_standin.py): admin CRUD with field errors and RBAC; polls of Java and Bedrock
servers (players, sample, version, MOTD, latency, favicon); misbehaving servers offline with a
reason while the poller goes on; the circuit breaker; `server_status` heard by a guest on the other
replica, with recovery; the exact list of a game bridge; one poller at a time, taken over when
its replica is killed; history, uptime and the maintenance that folds and prunes it."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.db.tables_minecraft import mc_servers, mc_status_hourly, mc_status_samples
from server.minecraft.poller import LEASE, LOCK_KEY
from tests.conftest import make_settings
from tests.support.accounts import make_admin
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.live import replicas
from tests.support.mc_standin import BedrockStandin, JavaStandin, closed_port, png
from tests.support.replica import Replica
from tests.support.wsclient import WsClient

FAST = {"MC_STATUS_TIMEOUT": 1}


@pytest.fixture
async def server(backend: dict[str, Any]) -> AsyncIterator[AppServer]:
    async with AppServer(make_settings(**backend, **FAST)) as app:
        yield app


async def admin_and_member(app: AppServer, client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    u = await people(client, "root", "bob")
    await make_admin(app, "root")
    return u["root"]["headers"], u["bob"]["headers"]


def field_errors(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(d["field"], d["code"]) for d in response.json()["error"]["details"]}


async def create(client: httpx.AsyncClient, admin: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/admin/servers", json=fields, headers=admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/servers")
    assert response.status_code == 200, response.text
    return {s["name"]: s for s in response.json()["servers"]}


async def status_push(ws: WsClient, match: Callable[[dict[str, Any]], bool], timeout: float = 8.0) -> dict[str, Any]:
    """The next push on `status:servers` whose data matches (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        push = await ws.push("message", timeout=max(0.1, deadline - time.monotonic()))
        if push["channel"] == "status:servers" and match(push["data"]):
            return push


def about(server_id: int, kind: str = "server_status", check: Callable[[dict[str, Any]], bool] = lambda s: True
          ) -> Callable[[dict[str, Any]], bool]:
    return lambda d: d.get("type") == kind and d.get("server", {}).get("id") == server_id and check(d["server"])


async def samples(app: AppServer, server_id: int | None = None) -> list[Any]:
    query = sa.select(mc_status_samples).order_by(mc_status_samples.c.id)
    if server_id is not None:
        query = query.where(mc_status_samples.c.server_id == server_id)
    return await app.resources.db.fetch_all("test.samples", query)


# --- admin CRUD -----------------------------------------------------------------------------------

async def test_admin_crud_validation_errors_and_rbac(server: AppServer) -> None:
    async with server.client() as client:
        admin, member = await admin_and_member(server, client)
        port = closed_port()
        body = {"name": "Survival", "host": "127.0.0.1", "port": port}
        assert (await client.get("/api/admin/servers")).status_code == 401
        assert (await client.get("/api/admin/servers", headers=member)).status_code == 403
        assert (await client.post("/api/admin/servers", json=body, headers=member)).status_code == 403
        assert (await client.delete("/api/admin/servers/1", headers=member)).status_code == 403

        # every bad field at once, each with its own error
        assert field_errors(await client.post("/api/admin/servers", headers=admin, json={
            "name": " ab ", "host": "http://play.example.net", "port": 0, "edition": "pocket",
            "description": "d" * 501, "map_url": "javascript:alert(1)", "modpack_url": "ftp://x.net/pack",
            "colour": "red"})) == {
            ("name", "value_error"), ("host", "value_error"), ("port", "greater_than_equal"),
            ("edition", "literal_error"), ("description", "string_too_long"), ("map_url", "value_error"),
            ("modpack_url", "value_error"), ("colour", "extra_forbidden")}
        assert field_errors(await client.post("/api/admin/servers", headers=admin, json={
            "name": "n" * 101, "host": "bad host", "port": 65536})) == {
            ("name", "string_too_long"), ("host", "value_error"), ("port", "less_than_equal")}
        assert ("name", "missing") in field_errors(await client.post("/api/admin/servers", headers=admin,
                                                                     json={"host": "127.0.0.1"}))

        # defaults: the edition's port, shown in the address only when not the default
        java = await create(client, admin, name="  Survival   World ", host="LocalHost", description=" Vanilla+ \n",
                            version="1.21.4", modpack="", map_url="https://map.vonix.test/")
        assert (java["name"], java["host"], java["port"], java["address"], java["edition"], java["description"],
                java["map_url"], java["modpack_url"], java["position"]) == (
            "Survival World", "localhost", 25565, "localhost", "java", "Vanilla+", "https://map.vonix.test/", None, 0)
        assert java["uptime"] == {"24h": None, "7d": None}
        bedrock = await create(client, admin, name="Pocket", host="::1", edition="bedrock")
        assert (bedrock["port"], bedrock["address"], bedrock["position"]) == (19132, "::1", 1)
        modded = await create(client, admin, name="Modded", host="127.0.0.1", port=port, modpack="All the Mods 9",
                              modpack_url="https://www.curseforge.com/minecraft/modpacks/all-the-mods-9")
        assert modded["address"] == f"127.0.0.1:{port}"
        conflict = await client.post("/api/admin/servers", json={"name": "MODDED", "host": "127.0.0.1"}, headers=admin)
        assert (conflict.status_code, conflict.json()["error"]["code"]) == (409, "server_name_taken")

        # edits: only what is sent; a bedrock server moved to a custom port, names still unique
        edited = await client.patch(f"/api/admin/servers/{bedrock['id']}", headers=admin,
                                    json={"port": 19200, "description": "Phones and consoles"})
        assert edited.status_code == 200, edited.text
        assert (edited.json()["address"], edited.json()["description"], edited.json()["name"]) == (
            "[::1]:19200", "Phones and consoles", "Pocket")
        taken = await client.patch(f"/api/admin/servers/{bedrock['id']}", json={"name": "survival world"},
                                   headers=admin)
        assert (taken.status_code, taken.json()["error"]["code"]) == (409, "server_name_taken")
        assert ("name", "missing") in field_errors(await client.patch(
            f"/api/admin/servers/{bedrock['id']}", json={"name": None}, headers=admin))
        cleared = await client.patch(f"/api/admin/servers/{java['id']}", json={"map_url": None}, headers=admin)
        assert cleared.json()["map_url"] is None
        missing = await client.patch("/api/admin/servers/999999", json={"name": "Nope"}, headers=admin)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")

        # reorder; the public list follows, without signing in, with a short cache
        order = await client.put("/api/admin/servers/order", json={"ids": [modded["id"], java["id"]]}, headers=admin)
        assert [s["name"] for s in order.json()["servers"]] == ["Modded", "Survival World", "Pocket"]
        public = await client.get("/api/servers")
        assert public.status_code == 200 and "max-age" in public.headers["cache-control"]
        assert [s["name"] for s in public.json()["servers"]] == ["Modded", "Survival World", "Pocket"]
        assert (await client.get(f"/api/servers/{java['id']}")).json()["name"] == "Survival World"
        assert (await client.get("/api/admin/servers", headers=admin)).headers["cache-control"] == "no-store"

        # delete
        assert (await client.delete(f"/api/admin/servers/{modded['id']}", headers=admin)).status_code == 204
        gone = await client.get(f"/api/servers/{modded['id']}")
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
        assert (await client.delete(f"/api/admin/servers/{modded['id']}", headers=admin)).status_code == 404
        assert list(await listed(client)) == ["Survival World", "Pocket"]
        await server.resources.wait_spawned()


# --- polls ------------------------------------------------------------------------------------------

async def test_polls_report_what_each_server_says_and_misbehaving_ones_are_offline_with_a_reason(
        server: AppServer) -> None:
    icon = png()
    motd = {"text": "Vonix ", "color": "gold", "bold": True,
            "extra": [{"text": "<script>alert(1)</script>", "color": "#55ff55", "bold": False}]}
    async with JavaStandin(motd=motd, favicon=icon, sample=["Steve", "Alex"]) as java, \
            BedrockStandin() as bedrock, JavaStandin(mode="garbage") as garbage, \
            JavaStandin(mode="hang") as hang, JavaStandin(mode="close") as early, server.client() as client:
        admin, _ = await admin_and_member(server, client)
        ids = {}
        for name, port, edition in (("Java", java.port, "java"), ("Bedrock", bedrock.port, "bedrock"),
                                    ("Garbage", garbage.port, "java"), ("Hang", hang.port, "java"),
                                    ("Early", early.port, "java"), ("Refused", closed_port(), "java")):
            ids[name] = (await create(client, admin, name=name, host="127.0.0.1", port=port, edition=edition))["id"]
        await server.resources.wait_spawned()  # each got its first look when created
        assert await server.resources.mc_status.poll_now() == 6  # and a round polls them all
        servers = await listed(client)

        status = servers["Java"]["status"]
        assert status["online"] is True and status["reason"] is None
        assert status["players"] == {"online": 3, "max": 20, "sample": ["Steve", "Alex"], "exact": False}
        assert status["version"] == "Paper 1.21.4"
        assert status["motd_html"] == ('<span class="mc-gold mc-bold">Vonix </span>'
                                       '<span class="mc-green">&lt;script&gt;alert(1)&lt;/script&gt;</span>')
        assert status["motd_text"] == "Vonix <script>alert(1)</script>"
        assert isinstance(status["latency_ms"], float) and 0 <= status["latency_ms"] < 1000
        assert status["checked_at"].endswith("Z") and java.pings >= 2
        favicon = await client.get(status["favicon_url"])
        assert favicon.status_code == 200 and favicon.content == icon
        assert favicon.headers["content-type"] == "image/png" and "immutable" in favicon.headers["cache-control"]
        assert (await client.get(status["favicon_url"], headers={"If-None-Match": favicon.headers["etag"]})
                ).status_code == 304
        assert (await client.get(f"/api/servers/{ids['Bedrock']}/favicon")).status_code == 404

        status = servers["Bedrock"]["status"]
        assert (status["online"], status["players"]["online"], status["players"]["max"], status["version"]) == (
            True, 5, 30, "1.21.50")
        assert status["motd_html"] == '<span class="mc-green">Bedrock </span><span class="mc-aqua">Vonix</span>'

        for name, reason in (("Garbage", "bad_response"), ("Hang", "timeout"), ("Early", "closed"),
                             ("Refused", "refused")):
            status = servers[name]["status"]
            assert (status["online"], status["reason"], status["players"]["online"], status["favicon_url"]) == (
                False, reason, 0, None), name
        # every poll is a sample (first looks and the round), the bad ones included
        for name, server_id in ids.items():
            assert len(await samples(server, server_id)) == 2, name

        # a change on the server shows at the next poll
        java.online, java.sample, java.motd = 4, ["Steve", "Alex", "Herobrine"], "§cMaintenance"
        await server.resources.mc_status.poll_now()
        status = (await listed(client))["Java"]["status"]
        assert (status["players"]["online"], status["players"]["sample"], status["motd_html"]) == (
            4, ["Steve", "Alex", "Herobrine"], '<span class="mc-red">Maintenance</span>')

        # history and uptime: the well-behaved servers up, the others down
        server.resources.mc_status.history.forget()
        history = (await client.get(f"/api/servers/{ids['Java']}/history", params={"range": "24h"})).json()
        assert history["range"] == "24h" and history["uptime"] == 100.0
        assert len(history["points"]) in (1, 2)  # 5-minute buckets
        assert history["points"][-1]["online"] == 1.0 and history["points"][-1]["max"] == 20
        week = (await client.get(f"/api/servers/{ids['Garbage']}/history", params={"range": "7d"})).json()
        assert week["uptime"] == 0.0 and week["points"][-1]["online"] == 0.0
        servers = await listed(client)
        assert servers["Java"]["uptime"] == {"24h": 100.0, "7d": 100.0}
        assert servers["Hang"]["uptime"] == {"24h": 0.0, "7d": 0.0}
        assert field_errors(await client.get(f"/api/servers/{ids['Java']}/history", params={"range": "1y"})) == {
            ("range", "literal_error")}
        assert (await client.get("/api/servers/999999/history")).status_code == 404


async def test_a_failing_server_trips_its_breaker_and_is_not_dialled_until_it_resets(backend: dict[str, Any]) -> None:
    settings = make_settings(**backend, **FAST, BREAKER_FAILURE_THRESHOLD=2, BREAKER_RESET_TIMEOUT=1.5)
    async with AppServer(settings) as app, JavaStandin(mode="close") as flaky, app.client() as client:
        admin, _ = await admin_and_member(app, client)
        created = await create(client, admin, name="Flaky", host="127.0.0.1", port=flaky.port)
        await app.resources.wait_spawned()  # first look: failure 1
        await app.resources.mc_status.poll_now()  # failure 2: the breaker opens
        dialled = flaky.connections
        assert dialled >= 2
        flaky.mode = "ok"  # back, but the breaker is still open: not dialled
        await app.resources.mc_status.poll_now()
        status = (await listed(client))["Flaky"]["status"]
        assert (status["online"], status["reason"]) == (False, "breaker_open")
        assert flaky.connections == dialled
        assert (await samples(app, created["id"]))[-1]["reason"] == "breaker_open"
        await asyncio.sleep(1.6)  # the reset timeout: one trial goes through, succeeds, closes it
        await app.resources.mc_status.poll_now()
        assert (await listed(client))["Flaky"]["status"]["online"] is True
        assert flaky.connections > dialled


# --- live, across replicas ------------------------------------------------------------------------

async def test_live_status_reaches_a_guest_on_the_other_replica_with_recovery_and_exact_lists(
        backend: dict[str, Any]) -> None:
    # Two replicas (scaled): changes are heard within one interval of the poller, wherever it runs.
    # Embedded mode is one server twice: nothing moves between replicas, so rounds are asked for
    # instead of waited for (a minute of the suite saved; the interval is shown in scaled mode).
    scaled = "REDIS_URL" in backend
    async with replicas(backend, MC_STATUS_INTERVAL=5 if scaled else 3600, **FAST) as (one, two), \
            JavaStandin() as game, one.client() as client:
        admin, _ = await admin_and_member(one, client)

        async def next_round() -> None:
            if not scaled:
                await one.resources.mc_status.poll_now()
        guest = await WsClient.connect(two.base_url)  # no token: a guest
        try:
            subscribed = await guest.request("subscribe", channel="status:servers")
            assert subscribed["ok"], subscribed
            created = await create(client, admin, name="Survival", host="127.0.0.1", port=game.port)
            server_id = created["id"]
            await status_push(guest, about(server_id, "server_updated"))
            first = await status_push(guest, about(server_id, check=lambda s: s["status"]["online"]))
            assert first["data"]["server"]["status"]["players"]["online"] == 3

            # a change on the game server: heard within one interval, from whichever replica polls
            game.online, game.sample = 4, ["Steve", "Alex", "Notch"]
            changed_at = time.monotonic()
            await next_round()
            heard = await status_push(guest, about(server_id, check=lambda s: s["status"]["players"]["online"] == 4))
            assert time.monotonic() - changed_at <= 5 + 1.5
            assert heard["data"]["server"]["status"]["players"]["sample"] == ["Steve", "Alex", "Notch"]
            # nothing a reader sees changes (latency aside): nothing is published
            if scaled:
                leader = one if one.resources.mc_status.poller.leading else two
                rounds = leader.resources.mc_status.poller.rounds
                while leader.resources.mc_status.poller.rounds < rounds + 1:
                    await asyncio.sleep(0.2)
            else:
                await next_round()
            await asyncio.sleep(0.3)
            assert guest.pushes.empty()

            # away while the server goes down; back with `since`: the missed update comes
            await guest.close()
            await game.stop()
            offset = heard["offset"]
            await next_round()
            deadline = time.monotonic() + 8
            while (await listed(client))["Survival"]["status"]["online"] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            guest = await WsClient.connect(two.base_url)
            back = await guest.request("subscribe", channel="status:servers",
                                       since={"offset": offset, "epoch": subscribed["epoch"]})
            assert back["recovered"] is True
            missed = [m["data"] for m in back["missed"] if m["data"]["type"] == "server_status"]
            assert missed[-1]["server"]["status"]["online"] is False
            assert missed[-1]["server"]["status"]["reason"] == "refused"

            # a game bridge's events make the list exact, from either replica, for everyone
            await two.resources.mc_status.game_event(server_id, "players", players=["Steve", "Alex", "Steve", ""])
            pushed = await status_push(guest, about(server_id, check=lambda s: s["status"]["players"]["exact"]))
            assert pushed["data"]["server"]["status"]["players"] == {
                "online": 2, "max": 0, "sample": ["Steve", "Alex"], "exact": True}
            assert pushed["data"]["server"]["status"]["online"] is True  # the bridge speaks from inside
            await one.resources.mc_status.game_event(server_id, "join", player="Herobrine")
            pushed = await status_push(guest, about(server_id, check=lambda s: s["status"]["players"]["online"] == 3))
            assert pushed["data"]["server"]["status"]["players"]["sample"] == ["Steve", "Alex", "Herobrine"]
            await two.resources.mc_status.game_event(server_id, "leave", player="Alex")
            pushed = await status_push(guest, about(server_id, check=lambda s: s["status"]["players"]["online"] == 2))
            assert pushed["data"]["server"]["status"]["players"]["sample"] == ["Steve", "Herobrine"]
            async with two.client() as other:
                assert (await listed(other))["Survival"]["status"]["players"]["sample"] == ["Steve", "Herobrine"]
            assert (await one.resources.mc_status.get(server_id))["status"]["players"]["exact"] is True
            await one.resources.mc_status.game_event(server_id, "join", player="Steve")  # already there: no push
            # joins racing on both replicas: none is lost (each event takes the row's write lock)
            racers = [f"Racer{i}" for i in range(12)]
            services = (two.resources.mc_status, one.resources.mc_status)
            await asyncio.gather(*(services[i % 2].game_event(server_id, "join", player=name)
                                   for i, name in enumerate(racers)))
            exact = (await two.resources.mc_status.get(server_id))["status"]["players"]
            assert exact["sample"][:2] == ["Steve", "Herobrine"] and sorted(exact["sample"][2:]) == sorted(racers)
            assert exact["online"] == 14
            await one.resources.mc_status.game_event(server_id, "bridge_offline")
            pushed = await status_push(guest, about(server_id, check=lambda s: not s["status"]["players"]["exact"]))
            assert pushed["data"]["server"]["status"]["online"] is False  # back to the polls
            with pytest.raises(ValueError):
                await one.resources.mc_status.game_event(server_id, "teleport")
            await one.resources.mc_status.game_event(999999, "join", player="Nobody")  # unknown: ignored

            # admin edits and removals are live too
            await client.patch(f"/api/admin/servers/{server_id}", json={"name": "Survival 2"}, headers=admin)
            await status_push(guest, about(server_id, "server_updated", lambda s: s["name"] == "Survival 2"))
            await client.delete(f"/api/admin/servers/{server_id}", headers=admin)
            await status_push(guest, lambda d: d == {"type": "server_removed", "id": server_id})
        finally:
            await guest.close()
            await one.resources.wait_spawned()


@pytest.mark.slow
async def test_one_replica_polls_and_another_takes_over_within_an_interval_when_it_is_killed(
        scaled_backend: dict[str, Any], tmp_path: Path) -> None:
    interval = 5
    env = {**scaled_backend, **FAST, "MC_STATUS_INTERVAL": interval, "MAINTENANCE_ENABLED": "false",
           "DRAIN_SECONDS": 1}
    async with JavaStandin() as game:
        doomed = Replica(env, log_path=tmp_path / "doomed.log").start()  # first up: it takes the lock
        try:
            async with AppServer(make_settings(**env)) as survivor, survivor.client() as client:
                admin, _ = await admin_and_member(survivor, client)
                created = await create(client, admin, name="Survival", host="127.0.0.1", port=game.port)
                await survivor.resources.wait_spawned()
                poller = survivor.resources.mc_status.poller
                start = len(await samples(survivor))
                await asyncio.sleep(2 * interval + 0.5)
                polled = await samples(survivor, created["id"])
                # one replica polls: 2 or 3 rounds in two intervals (two replicas would make 4 to 6)
                assert 2 <= len(polled) - start <= 3, [row["at"] for row in polled]
                assert (poller.leading, poller.rounds) == (False, 0)
                gaps = [(b["at"] - a["at"]).total_seconds() for a, b in zip(polled[start:], polled[start + 1:],
                                                                             strict=False)]
                assert all(gap >= interval * 0.8 for gap in gaps), gaps

                doomed.signal(signal.SIGKILL)  # no release: its lock has to expire
                killed = time.monotonic()
                doomed.wait(10)
                while not poller.rounds:
                    assert time.monotonic() - killed <= interval, "no takeover within one interval"
                    await asyncio.sleep(0.1)
                assert poller.leading
                taken = time.monotonic() - killed
                assert taken <= interval * (LEASE + 0.2) + 0.5, taken
                assert len(await samples(survivor, created["id"])) > len(polled)
        finally:
            doomed.stop()


async def test_graceful_stop_hands_the_lock_over(scaled_backend: dict[str, Any]) -> None:
    settings = make_settings(**scaled_backend, **FAST, MC_STATUS_INTERVAL=5)
    async with AppServer(settings) as first:
        deadline = time.monotonic() + 3
        while not first.resources.mc_status.poller.leading:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        second = await AppServer(settings).start()
        try:
            await asyncio.sleep(0.5)
            assert not second.resources.mc_status.poller.leading
            assert await second.resources.locks.acquire(LOCK_KEY, 1) is None  # held
            await first.stop()
            stopped = time.monotonic()
            while not second.resources.mc_status.poller.leading:
                assert time.monotonic() - stopped < 5
                await asyncio.sleep(0.05)
        finally:
            await second.stop()


# --- history maintenance ------------------------------------------------------------------------

async def test_maintenance_folds_old_polls_into_hours_and_prunes_past_the_retention(server: AppServer) -> None:
    db = server.resources.db
    now = datetime.now(UTC)
    async with server.client() as client:
        admin, _ = await admin_and_member(server, client)
        created = await create(client, admin, name="Old", host="127.0.0.1", port=closed_port())
        await server.resources.wait_spawned()
    server_id = created["id"]
    await db.execute("test.clear", sa.delete(mc_status_samples))
    hour = (now - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    rows = [{"server_id": server_id, "at": hour + timedelta(minutes=5 * i), "online": i % 4 != 0,
             "players": i, "max": 20, "latency_ms": 10.0, "reason": None if i % 4 else "timeout"}
            for i in range(12)]  # one hour: 12 polls, 9 online
    rows += [{"server_id": server_id, "at": now - timedelta(days=40, minutes=i), "online": True, "players": 1,
              "max": 20, "latency_ms": 1.0, "reason": None} for i in range(3)]  # past the 30-day retention
    rows += [{"server_id": server_id, "at": now - timedelta(minutes=10 + i), "online": True, "players": 7,
              "max": 25, "latency_ms": 1.0, "reason": None} for i in range(4)]  # recent: kept as they are
    for row in rows:
        await db.execute("test.sample", mc_status_samples.insert().values(**row))
    # an hour folded earlier for the same hour: merged into, not replaced
    await db.execute("test.hourly", mc_status_hourly.insert().values(
        server_id=server_id, hour=hour, polls=2, online_polls=2, players_sum=30, players_peak=15, max=30))
    await db.execute("test.old_hourly", mc_status_hourly.insert().values(
        server_id=server_id, hour=hour - timedelta(days=35), polls=5, online_polls=5, players_sum=5, players_peak=1,
        max=20))

    result = await server.resources.maintenance.maintenance.run("mc_status_history")
    assert result.status == "ok", result
    assert result.counts["mc_status_samples"] == 15 and result.counts["mc_status_hourly"] == 1

    left = await samples(server, server_id)
    assert [row["players"] for row in left] == [7, 7, 7, 7]
    hours = await db.fetch_all("test.hours", sa.select(mc_status_hourly))
    assert len(hours) == 1
    folded = hours[0]
    online_players = sum(i for i in range(12) if i % 4 != 0)
    assert (folded["polls"], folded["online_polls"], folded["players_sum"], folded["players_peak"], folded["max"]) == (
        14, 11, 30 + online_players, 15, 30)
    # runs again: nothing left to do
    again = await server.resources.maintenance.maintenance.run("mc_status_history")
    assert again.counts["mc_status_samples"] == 0

    # the 7-day chart reads the folded hour and the recent polls; the 24-hour one the polls only
    async with server.client() as client:
        server.resources.mc_status.history.forget()
        week = (await client.get(f"/api/servers/{server_id}/history", params={"range": "7d"})).json()
        folded_point = next(p for p in week["points"] if p["at"] == hour.isoformat().replace("+00:00", "Z"))
        assert folded_point == {"at": folded_point["at"], "online": round(11 / 14, 3),
                                "players": round((30 + online_players) / 14, 2), "max": 30}
        assert week["uptime"] == round(100 * (11 + 4) / (14 + 4), 1)
        day = (await client.get(f"/api/servers/{server_id}/history", params={"range": "24h"})).json()
        assert day["uptime"] == 100.0 and {p["players"] for p in day["points"]} == {7.0}
        assert all(datetime.fromisoformat(p["at"].replace("Z", "+00:00")).minute % 5 == 0 for p in day["points"])
        servers = await listed(client)
        assert servers["Old"]["uptime"] == {"24h": 100.0, "7d": week["uptime"]}
    assert await db.fetch_val("test.count", sa.select(sa.func.count()).select_from(mc_servers)) == 1
