"""Web push against a local push-service stand-in that verifies the VAPID signature and decrypts the
payload: offline users are pushed (signed, encrypted, TTL/urgency/topic set), online users are not,
404/410 delete the subscription, failures are retried with backoff, a failing host trips its
circuit breaker without affecting another host."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.push.vapid import generate
from server.settings import ConfigError
from tests.conftest import make_settings
from tests.support.accounts import PASSWORD, register
from tests.support.appserver import AppServer
from tests.support.community import people, say
from tests.support.contract import assert_conforms
from tests.support.push_service import PushService
from tests.support.wsclient import WsClient

PUBLIC, PRIVATE = generate()


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    async with PushService() as service:
        yield service


def push_settings(backend: dict[str, Any], **overrides: Any) -> Any:
    values = {"VAPID_PUBLIC_KEY": PUBLIC, "VAPID_PRIVATE_KEY": PRIVATE, "VAPID_SUBJECT": "mailto:ops@vonix.test",
              "PUSH_RETRY_BACKOFF": 0.01, **backend}
    values.update(overrides)
    return make_settings(**values)


async def subscribe(client: httpx.AsyncClient, who: dict[str, Any], info: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/push/subscriptions", json=info, headers=who["headers"])


async def subscriptions_of(client: httpx.AsyncClient, who: dict[str, Any]) -> list[str]:
    listed = await client.get("/api/push/subscriptions", headers=who["headers"])
    return [s["endpoint"] for s in listed.json()["subscriptions"]]


async def test_offline_mention_is_pushed_signed_and_encrypted(backend: dict[str, Any],
                                                             push_service: PushService) -> None:
    async with AppServer(push_settings(backend)) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        key = (await client.get("/api/push/key", headers=u["bob"]["headers"])).json()
        assert key == {"enabled": True, "public_key": PUBLIC}
        browser = push_service.subscribe()
        assert (await subscribe(client, u["bob"], browser.info())).status_code == 201
        offset = await say(client, u["alice"], "room:general", {"text": "@bob the server is up"})
        [delivery] = await push_service.wait_for(1)
        assert delivery.payload["title"] == "alice mentioned you in #general"
        assert delivery.payload["body"] == "@bob the server is up"
        assert delivery.payload["url"] == f"/rooms/general#m{offset}"
        assert delivery.payload["tag"] == "room:general" and delivery.payload["kind"] == "mention"
        assert isinstance(delivery.payload["id"], int)
        assert delivery.vapid_key == PUBLIC
        assert delivery.claims["sub"] == "mailto:ops@vonix.test" and delivery.claims["aud"] == push_service.origin
        assert delivery.headers["ttl"] == "86400" and delivery.headers["urgency"] == "high"
        assert len(delivery.headers["topic"]) == 32 and delivery.headers["content-encoding"] == "aes128gcm"

        # Another message in the same room collapses onto the same topic; a DM has its own.
        await say(client, u["alice"], "room:general", {"text": "@bob again"})
        dm = (await client.post("/api/dms", json={"username": "bob"}, headers=u["alice"]["headers"])).json()["channel"]
        await say(client, u["alice"], dm, {"text": "hello"})
        deliveries = await push_service.wait_for(3)
        by_tag = {d.payload["tag"]: d.headers["topic"] for d in deliveries}
        assert set(by_tag) == {"room:general", dm} and by_tag["room:general"] != by_tag[dm]
        assert [d.payload["url"] for d in deliveries][2] == "/dms/alice"
        assert push_service.refusals == []


async def test_only_users_without_a_live_connection_are_pushed(backend: dict[str, Any],
                                                              push_service: PushService) -> None:
    async with AppServer(push_settings(backend)) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        await subscribe(client, u["bob"], push_service.subscribe().info())
        ws = await WsClient.connect(server.base_url, u["bob"]["headers"]["Authorization"].split()[1])
        assert (await ws.request("subscribe", channel=f"user:{u['bob']['id']}"))["ok"]
        await say(client, u["alice"], "room:general", {"text": "@bob you are here"})
        assert (await ws.push("message"))["data"]["type"] == "notification"  # live instead
        await ws.close()
        await asyncio.sleep(0.3)  # the connection is released
        await say(client, u["alice"], "room:general", {"text": "@bob now you are gone"})
        deliveries = await push_service.wait_for(1)
        await asyncio.sleep(0.3)
        assert [d.payload["body"] for d in deliveries] == ["@bob now you are gone"]


async def test_push_when_always_pushes_online_users_too(backend: dict[str, Any], push_service: PushService) -> None:
    async with AppServer(push_settings(backend, PUSH_WHEN="always")) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        await subscribe(client, u["bob"], push_service.subscribe().info())
        ws = await WsClient.connect(server.base_url, u["bob"]["headers"]["Authorization"].split()[1])
        try:
            await say(client, u["alice"], "room:general", {"text": "@bob both ways"})
            assert [d.payload["body"] for d in await push_service.wait_for(1)] == ["@bob both ways"]
        finally:
            await ws.close()


@pytest.mark.parametrize("status", [410, 404])
async def test_a_gone_subscription_is_deleted(backend: dict[str, Any], push_service: PushService,
                                              status: int) -> None:
    async with AppServer(push_settings(backend)) as server, server.client() as client:
        u = await people(client, "bob")
        gone, kept = push_service.subscribe(), push_service.subscribe()
        for browser in (gone, kept):
            await subscribe(client, u["bob"], browser.info())
        push_service.answer(gone, status)
        result = await client.post("/api/push/test", headers=u["bob"]["headers"])
        assert sorted(result.json()["outcomes"]) == ["gone", "sent"]
        await assert_conforms(client, result, "POST", "/api/push/test")
        assert await subscriptions_of(client, u["bob"]) == [kept.endpoint]
        assert [name for name, _ in push_service.requests].count(gone.name) == 1  # never retried


async def test_temporary_failures_are_retried_with_backoff(backend: dict[str, Any],
                                                          push_service: PushService) -> None:
    async with AppServer(push_settings(backend, PUSH_RETRIES=3)) as server, server.client() as client:
        u = await people(client, "bob")
        browser = push_service.subscribe()
        await subscribe(client, u["bob"], browser.info())
        push_service.answer(browser, 503, 429)
        result = await client.post("/api/push/test", headers=u["bob"]["headers"])
        assert result.json() == {"sent": 1, "outcomes": ["sent"]}
        assert [status for _, status in push_service.requests] == [503, 429, 201]

        push_service.answer(browser, 500, 500, 500, 500)
        failed = await client.post("/api/push/test", headers=u["bob"]["headers"])
        assert failed.json()["outcomes"] == ["failed"]  # 1 + 3 retries, then it gives up
        assert [status for _, status in push_service.requests][3:] == [500, 500, 500, 500]
        assert await subscriptions_of(client, u["bob"]) == [browser.endpoint]  # kept: not its fault


async def test_each_push_host_has_its_own_circuit_breaker(backend: dict[str, Any], push_service: PushService) -> None:
    settings = push_settings(backend, PUSH_RETRIES=0, BREAKER_FAILURE_THRESHOLD=2, BREAKER_RESET_TIMEOUT=60)
    async with PushService() as healthy, AppServer(settings) as server, server.client() as client:
        u = await people(client, "bob", "carol")
        failing = push_service.subscribe()
        await subscribe(client, u["bob"], failing.info())
        await subscribe(client, u["carol"], healthy.subscribe().info())
        push_service.answer(failing, 500, 500, 500)
        for _ in range(2):
            assert (await client.post("/api/push/test", headers=u["bob"]["headers"])).json()["outcomes"] == ["failed"]
        tripped = await client.post("/api/push/test", headers=u["bob"]["headers"])
        assert tripped.json()["outcomes"] == ["circuit_open"]
        await assert_conforms(client, tripped, "POST", "/api/push/test")
        assert len(push_service.requests) == 2  # the open circuit sent nothing
        other = await client.post("/api/push/test", headers=u["carol"]["headers"])
        assert other.json()["outcomes"] == ["sent"]  # another host is unaffected
        metrics = (await client.get("/metrics")).text
        assert 'vonix_push_sent_total{outcome="circuit_open"} 1.0' in metrics


async def test_subscription_api(backend: dict[str, Any], push_service: PushService) -> None:
    async with AppServer(push_settings(backend)) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        info = push_service.subscribe().info()
        assert (await subscribe(client, u["alice"], info)).status_code == 201
        assert (await subscribe(client, u["alice"], info)).status_code == 200  # refreshed, not doubled
        # The same browser signed in as someone else: the endpoint moves to the new account.
        assert (await subscribe(client, u["bob"], info)).status_code == 200
        assert await subscriptions_of(client, u["alice"]) == []
        assert await subscriptions_of(client, u["bob"]) == [info["endpoint"]]

        bad_keys = {**info, "keys": {"p256dh": "A" * 40, "auth": info["keys"]["auth"]}}
        assert (await subscribe(client, u["bob"], bad_keys)).status_code == 422
        assert (await subscribe(client, u["bob"], {**info, "endpoint": "ftp://push.example/x"})).status_code == 400
        assert (await client.post("/api/push/subscriptions", json=info)).status_code == 401

        gone = await client.request("DELETE", "/api/push/subscriptions", json={"endpoint": info["endpoint"]},
                                    headers=u["alice"]["headers"])
        assert gone.status_code == 404  # not hers any more
        gone = await client.request("DELETE", "/api/push/subscriptions", json={"endpoint": info["endpoint"]},
                                    headers=u["bob"]["headers"])
        assert gone.status_code == 204 and await subscriptions_of(client, u["bob"]) == []

        await register(client, "carol")
        signed = await client.post("/api/auth/login", json={"login": "carol", "password": PASSWORD, "mode": "cookie"})
        refused = await client.post("/api/push/subscriptions", json=info)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
        done = await client.post("/api/push/subscriptions", json=info,
                                 headers={"X-CSRF-Token": signed.json()["csrf_token"]})
        assert done.status_code == 201


async def test_without_vapid_keys_push_is_off(app_server: AppServer) -> None:
    async with app_server.client() as client:
        u = await people(client, "bob")
        assert (await client.get("/api/push/key", headers=u["bob"]["headers"])).json() == {
            "enabled": False, "public_key": None}
        off = await client.post("/api/push/test", headers=u["bob"]["headers"])
        assert off.status_code == 503 and off.json()["error"]["code"] == "push_disabled"
        config = (await client.get("/api/app/config")).json()
        assert config["push"] == {"enabled": False, "public_key": None}


def test_vapid_keys_command_prints_a_pair_the_settings_accept() -> None:
    out = subprocess.run([sys.executable, "-m", "server.cli", "vapid-keys"], capture_output=True, text=True,
                         check=True, env={"VONIX_ENV": "test", "PATH": "/usr/bin:/bin"}).stdout
    pairs = dict(line.split("=", 1) for line in out.strip().splitlines())
    assert set(pairs) == {"VAPID_PUBLIC_KEY", "VAPID_PRIVATE_KEY"}
    assert make_settings(**pairs).vapid_public_key == pairs["VAPID_PUBLIC_KEY"]
    with pytest.raises(ConfigError, match="does not belong"):
        make_settings(VAPID_PUBLIC_KEY=PUBLIC, VAPID_PRIVATE_KEY=pairs["VAPID_PRIVATE_KEY"])
    with pytest.raises(ConfigError, match="set together"):
        make_settings(VAPID_PUBLIC_KEY=PUBLIC)
    with pytest.raises(ConfigError, match="VAPID_SUBJECT"):
        make_settings(VAPID_SUBJECT="ops@vonix.test")


async def test_a_connection_on_another_replica_counts_as_online(scaled_backend: dict[str, Any],
                                                               push_service: PushService) -> None:
    settings = push_settings(scaled_backend)
    async with AppServer(settings) as a, AppServer(settings) as b, b.client() as client:
        u = await people(client, "alice", "bob")
        await subscribe(client, u["bob"], push_service.subscribe().info())
        ws = await WsClient.connect(a.base_url, u["bob"]["headers"]["Authorization"].split()[1])
        try:
            assert (await ws.request("subscribe", channel=f"user:{u['bob']['id']}"))["ok"]
            await say(client, u["alice"], "room:general", {"text": "@bob on the other replica"})  # through b
            assert (await ws.push("message"))["data"]["notification"]["body"] == "@bob on the other replica"
            await asyncio.sleep(0.3)
            assert push_service.deliveries == []  # b saw bob's connection on a through presence
        finally:
            await ws.close()
        await asyncio.sleep(0.3)
        await say(client, u["alice"], "room:general", {"text": "@bob gone everywhere"})
        assert [d.payload["body"] for d in await push_service.wait_for(1)] == ["@bob gone everywhere"]


async def test_community_notifications_reach_members_away_by_push(backend: dict[str, Any],
                                                                 push_service: PushService) -> None:
    """A reply in a thread bob watches, and the reminder of an event he is going to, are pushed to
    him while he has no connection (the same rule as chat notifications)."""
    from datetime import UTC, datetime, timedelta

    async with AppServer(push_settings(backend)) as server, server.client() as client:
        u = await people(client, "alice", "bob")
        alice, bob = u["alice"]["headers"], u["bob"]["headers"]
        assert (await subscribe(client, u["bob"], push_service.subscribe().info())).status_code == 201
        category = (await client.get("/api/forum/categories", headers=bob)).json()["categories"][0]
        thread = (await client.post(f"/api/forum/categories/{category['id']}/threads",
                                    json={"title": "Castle walls", "body": "stone or brick?"}, headers=bob)).json()
        reply = await client.post(f"/api/forum/threads/{thread['id']}/replies", json={"body": "stone"}, headers=alice)
        assert reply.status_code == 201, reply.text
        [delivery] = await push_service.wait_for(1)
        assert delivery.payload["kind"] == "forum_reply"
        assert delivery.payload["url"] == f"/forum/t/{thread['id']}#r{reply.json()['id']}"
        assert "Castle walls" in delivery.payload["title"] + delivery.payload["body"]
        starts = datetime.now(UTC) + timedelta(minutes=30)  # inside the 60-minute reminder window
        event = (await client.post("/api/events", json={
            "title": "Build night", "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat()}, headers=alice)).json()
        assert (await client.post(f"/api/events/{event['id']}/rsvp", json={"status": "going"},
                                  headers=bob)).status_code == 200
        await server.resources.groups.reminders.tick()  # (or the replica's own loop, if it came first)
        deliveries = await push_service.wait_for(2)
        assert deliveries[1].payload["kind"] == "event_reminder"
        assert deliveries[1].payload["url"] == f"/events/{event['id']}"
        assert await server.resources.groups.reminders.tick() == 0  # once
        await asyncio.sleep(0.3)
        assert len(push_service.deliveries) == 2
