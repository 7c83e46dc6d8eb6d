"""WS_MAX_GUESTS_PER_IP: guests (no credentials on the upgrade) following `status:` outlive the auth
timeout, so each address may hold only so many of them on a replica; one more is closed with 4006
before it can subscribe. A guest stops counting when it signs in with `auth` or goes; members with a
token on the upgrade never count; the address is the rate limiter's (X-Forwarded-For only from a
trusted proxy). See docs/protocol.md ("Guests") and server/guest_limit.py."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import websockets

from server.guest_limit import GuestLimit, address_key
from tests.conftest import make_settings
from tests.support.appserver import AppServer
from tests.support.community import people
from tests.support.live import replicas, token_of
from tests.support.wsclient import WsClient

LOCAL = "127.0.0.1"


async def follower(server: AppServer, headers: dict[str, str] | None = None) -> WsClient:
    """A guest that got in and follows `status:servers` (what keeps it past the auth timeout)."""
    guest = await connect(server, headers)
    reply = await guest.request("subscribe", channel="status:servers")
    assert reply["ok"], reply
    return guest


async def connect(server: AppServer, headers: dict[str, str] | None = None) -> WsClient:
    url = server.base_url.replace("http://", "ws://") + "/ws"
    return WsClient(await websockets.connect(url, additional_headers=headers or {}))


async def refused(server: AppServer, headers: dict[str, str] | None = None) -> None:
    """A guest over the cap: closed with 4006 before it could subscribe anything."""
    guest = await connect(server, headers)
    try:
        assert await guest.close_code(timeout=3) == 4006
        assert guest.frames_received == 0
    finally:
        await guest.close()


async def until_held(server: AppServer, ip: str, count: int) -> None:
    """Wait for the server to see a close (the client's close returns before the server's cleanup)."""
    limit = server.resources.guests
    for _ in range(100):
        if limit.held(ip) == count:
            return
        await asyncio.sleep(0.02)
    assert limit.held(ip) == count


def metric(server: AppServer, sample: str) -> float:
    text = server.resources.metrics.render().decode()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert found, f"{sample} not exposed"
    return float(found.group(1))


async def test_an_address_holds_at_most_the_cap_of_guests(backend: dict[str, Any]) -> None:
    settings = make_settings(**backend, WS_MAX_GUESTS_PER_IP=3, WS_AUTH_TIMEOUT=1)
    async with AppServer(settings) as server:
        async with server.client() as client:
            alice = (await people(client, "alice"))["alice"]
        guests = [await follower(server) for _ in range(3)]
        member: WsClient | None = None
        late: list[WsClient] = []
        try:
            await refused(server)
            # the three stay past the auth timeout (following `status:` spares them): the cap is what bounds them
            await asyncio.sleep(1.3)
            assert not any(g.closed.done() for g in guests)
            assert server.resources.guests.held(LOCAL) == 3

            # a member with a token on the upgrade is not a guest: admitted over the cap, never counted
            member = await WsClient.connect(server.base_url, token_of(alice))
            assert (await member.request("subscribe", channel="status:servers"))["ok"]
            assert (await member.request("subscribe", channel="room:general"))["ok"]
            assert server.resources.guests.held(LOCAL) == 3

            # a guest that signs in with `auth` is a member from then on: its slot goes to a new guest
            signed_in = await guests[0].request("auth", token=token_of(alice))
            assert signed_in["ok"], signed_in
            assert server.resources.guests.held(LOCAL) == 2
            late.append(await follower(server))
            await refused(server)

            # a guest that leaves frees its slot too
            await guests[1].close()
            await until_held(server, LOCAL, 2)
            late.append(await follower(server))
            await refused(server)

            # what is left is followed as before; the metrics tell the operator
            await server.resources.node.publish("status:servers", {"type": "test", "n": 1})
            for ws in (guests[0], guests[2], *late, member):
                assert (await ws.push("message"))["data"] == {"type": "test", "n": 1}
            assert metric(server, "vonix_ws_guest_connections") == 3
            assert metric(server, 'vonix_ws_guests_refused_total{reason="limit"}') == 3
            assert metric(server, 'vonix_ws_guests_refused_total{reason="disabled"}') == 0
        finally:
            for ws in (*guests, *late, *([member] if member else [])):
                await ws.close()
        await until_held(server, LOCAL, 0)
        assert metric(server, "vonix_ws_guest_connections") == 0


async def test_forwarded_for_moves_a_guest_only_behind_a_trusted_proxy(backend: dict[str, Any]) -> None:
    # The test's peer (127.0.0.1) is not a proxy here: whatever it forwards, it is 127.0.0.1.
    untrusted = make_settings(**backend, WS_MAX_GUESTS_PER_IP=1, TRUSTED_PROXIES="10.9.9.9")
    async with AppServer(untrusted) as server:
        first = await follower(server)
        try:
            await refused(server, {"X-Forwarded-For": "198.51.100.7"})
            await refused(server, {"X-Forwarded-For": "198.51.100.8, 198.51.100.9"})
            assert server.resources.guests.held(LOCAL) == 1
            assert server.resources.guests.held("198.51.100.7") == 0
        finally:
            await first.close()

    # The same headers from a trusted proxy do name the client, so the check can tell the two apart;
    # an IPv6 client counts by its /64 (one host's usual allocation).
    trusted = make_settings(**backend, WS_MAX_GUESTS_PER_IP=1, TRUSTED_PROXIES=LOCAL)
    async with AppServer(trusted) as server:
        admitted = [await follower(server, {"X-Forwarded-For": "198.51.100.7"}),
                    await follower(server, {"X-Forwarded-For": "198.51.100.8"}),
                    await follower(server, {"X-Forwarded-For": "2001:db8::1"}),
                    await follower(server, {"X-Forwarded-For": "2001:db8:0:1::1"})]
        try:
            await refused(server, {"X-Forwarded-For": "198.51.100.7"})
            await refused(server, {"X-Forwarded-For": "2001:db8::ffff"})
            assert server.resources.guests.held("198.51.100.7") == 1
            assert server.resources.guests.held(LOCAL) == 0
        finally:
            for ws in admitted:
                await ws.close()


async def test_the_count_is_per_replica(backend: dict[str, Any]) -> None:
    """Each replica counts its own guests (no Redis round trip on a guest upgrade): a client over the
    cap on one replica still gets in on another. Embedded mode has the one server, hence one count."""
    async with replicas(backend, WS_MAX_GUESTS_PER_IP=1) as (one, two):
        first = await follower(one)
        other: WsClient | None = None
        try:
            await refused(one)
            if one is two:
                await refused(two)
            else:
                other = await follower(two)
                await refused(two)
        finally:
            for ws in (first, *([other] if other else [])):
                await ws.close()


async def test_a_cap_of_zero_admits_no_guest_but_every_member(backend: dict[str, Any]) -> None:
    async with AppServer(make_settings(**backend, WS_MAX_GUESTS_PER_IP=0)) as server:
        async with server.client() as client:
            bob = (await people(client, "bob"))["bob"]
        await refused(server)
        member = await WsClient.connect(server.base_url, token_of(bob))
        try:
            assert (await member.request("subscribe", channel="status:servers"))["ok"]
            assert metric(server, 'vonix_ws_guests_refused_total{reason="disabled"}') == 1
        finally:
            await member.close()


def test_addresses_count_by_host_ipv4_and_by_64_ipv6() -> None:
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2::ffff") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"  # an IPv4 client on a dual-stack socket
    assert address_key("unknown") == "unknown"
    limit = GuestLimit(2, [])
    scope = {"type": "websocket", "client": ("2001:db8::5", 1234), "headers": []}
    slots = [limit.admit(scope), limit.admit({**scope, "client": ("2001:db8::6", 1)})]
    assert all(slots) and limit.admit({**scope, "client": ("2001:db8::7", 1)}) is None
    for slot in slots:
        assert slot is not None
        slot.release()
        slot.release()  # idempotent: a sign-in then a close release once
    assert (limit.total, limit.held("2001:db8::5")) == (0, 0)
