"""Guests: a connection that has not signed in follows `status:` channels (the game servers' live
status on the signed-out home page) and nothing else, on either replica, with recovery."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.community import people
from tests.support.live import replicas, token_of
from tests.support.wsclient import WsClient


async def test_a_guest_follows_status_channels_and_nothing_else(backend: dict[str, Any]) -> None:
    async with replicas(backend, WS_AUTH_TIMEOUT=1) as (one, two):
        async with one.client() as client:
            alice = (await people(client, "alice"))["alice"]
        guest = await WsClient.connect(two.base_url)
        idle = await WsClient.connect(two.base_url)
        member = await WsClient.connect(two.base_url, token_of(alice))
        try:
            subscribed = await guest.request("subscribe", channel="status:servers")
            assert subscribed["ok"] and subscribed["offset"] == 0

            # the server publishes on one replica, the guest hears it on the other
            await one.resources.node.publish("status:servers", {"type": "test", "n": 1})
            heard = await guest.push("message")
            assert (heard["channel"], heard["data"], heard["offset"]) == ("status:servers", {"type": "test", "n": 1}, 1)
            assert heard.get("from") is None

            # everything else still asks for a sign-in, and a batch with one other channel is refused whole
            for op, fields in (("subscribe", {"channel": "room:general"}),
                               ("subscribe", {"channels": ["status:servers2", "room:general"]}),
                               ("publish", {"channel": "status:servers", "data": {"text": "hi"}}),
                               ("history", {"channel": "status:servers"}),
                               ("presence", {"channel": "room:general"}),
                               ("unsubscribe", {"channel": "room:general"})):
                refused = await guest.request(op, **fields)
                assert refused["ok"] is False and refused["error"]["code"] == "not_authenticated", (op, refused)
            # nobody publishes on a status channel but the server, signed in or not
            assert (await member.request("publish", channel="status:servers", data={"text": "hi"}))["error"]["code"] \
                == "forbidden"

            # past the auth timeout: the idle guest is closed (4002), the following one stays
            assert await idle.close_code(timeout=5) == 4002
            await asyncio.sleep(0.3)
            assert not guest.closed.done()

            # recovery like any channel: away for two updates, back with `since`
            await guest.close()
            await one.resources.node.publish("status:servers", {"type": "test", "n": 2})
            await one.resources.node.publish("status:servers", {"type": "test", "n": 3})
            guest = await WsClient.connect(two.base_url)
            back = await guest.request("subscribe", channel="status:servers",
                                       since={"offset": 1, "epoch": subscribed["epoch"]})
            assert back["recovered"] is True and [m["data"]["n"] for m in back["missed"]] == [2, 3]

            # a guest that signs in keeps what it follows and may now do the rest
            assert (await guest.request("auth", token=token_of(alice)))["ok"]
            assert (await guest.request("subscribe", channel="room:general"))["ok"]
            await one.resources.node.publish("status:servers", {"type": "test", "n": 4})
            assert (await guest.push("message"))["data"]["n"] == 4
            assert (await guest.request("unsubscribe", channel="status:servers"))["ok"]
        finally:
            for ws in (guest, idle, member):
                await ws.close()
