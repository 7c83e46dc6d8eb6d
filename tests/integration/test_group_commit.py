"""Chat messages stored in batches (group commit), on SQLite and on PostgreSQL.

`store_batch` is the one writer of chat messages: offsets contiguous per channel under concurrent
overlapping batches, repeated nonces answered with the first offset, a deleted channel failing
only its own messages. Through the app: concurrent publishers on several rooms share
transactions and every subscriber still gets each room's messages once, in offset order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.queries import messages as history
from server.db.queries.message_batch import ChannelGone, NewMessage, StoredOffset, store_batch
from server.db.tables import channels, messages, users
from server.db.types import utcnow
from tests.conftest import make_settings
from tests.support.accounts import login, register
from tests.support.appserver import AppServer
from tests.support.wsclient import WsClient


async def _channel(db: Database, name: str) -> int:
    await db.execute("test.channel", channels.insert().values(name=name, kind="room", created_at=utcnow()))
    return int(await db.fetch_val("test.channel_id", sa.select(channels.c.id).where(channels.c.name == name)))


async def _user(db: Database, name: str) -> int:
    await db.execute("test.user", users.insert().values(username=name, updated_at=utcnow(),
                                                        created_at=utcnow()))
    return int(await db.fetch_val("test.user_id", sa.select(users.c.id).where(users.c.username == name)))


def _msg(channel_id: int, text: str, author_id: int | None = None, nonce: str | None = None) -> NewMessage:
    return NewMessage(channel_id, author_id, text, {"text": text}, nonce, utcnow())


async def test_offsets_nonces_and_a_deleted_channel(database: Database) -> None:
    x, y = await _channel(database, "room:x"), await _channel(database, "room:y")
    author = await _user(database, "Nonce")
    outcomes = await store_batch(database, [
        _msg(x, "a"), _msg(y, "b"), _msg(x, "c", author, "n1"), _msg(x, "c again", author, "n1"),
        _msg(y, "e", author, "n2"), _msg(987654, "nowhere"),
    ])
    assert outcomes[:5] == [StoredOffset(1, False), StoredOffset(1, False), StoredOffset(2, False),
                            StoredOffset(2, True), StoredOffset(2, False)]
    assert isinstance(outcomes[5], ChannelGone)
    again = await store_batch(database, [_msg(y, "e once more", author, "n2"), _msg(y, "f")])
    assert again == [StoredOffset(2, True), StoredOffset(3, False)]

    stored_x = await history.history_after(database, x, 0, 10)
    assert [(m.offset, m.body, m.data, m.nonce, m.author_id) for m in stored_x] == [
        (1, "a", {"text": "a"}, None, None), (2, "c", {"text": "c"}, "n1", author)]
    assert [m.body for m in await history.history_after(database, y, 0, 10)] == ["b", "e", "f"]
    assert stored_x[0].created_at.tzinfo is not None
    assert abs((utcnow() - stored_x[0].created_at).total_seconds()) < 60
    last = await database.fetch_all("test.last", sa.select(channels.c.id, channels.c.last_offset))
    assert {r["id"]: r["last_offset"] for r in last if r["id"] in (x, y)} == {x: 2, y: 3}


async def test_overlapping_concurrent_batches_stay_contiguous(database: Database) -> None:
    """Batches over the same channels in opposite orders: no deadlock, no gap, no repeat."""
    ids = [await _channel(database, f"room:c{i}") for i in range(4)]

    async def writer(order: list[int], tag: str) -> None:
        for round_ in range(15):
            await store_batch(database, [_msg(cid, f"{tag}{round_}") for cid in order for _ in range(3)])

    await asyncio.wait_for(asyncio.gather(writer(ids, "f"), writer(ids[::-1], "r"), writer(ids[1:] + ids[:1], "s")),
                           timeout=60)
    for cid in ids:
        rows = await database.fetch_all("test.offsets", sa.select(messages.c.offset).where(
            messages.c.channel_id == cid).order_by(messages.c.offset))
        assert [r["offset"] for r in rows] == list(range(1, 3 * 15 * 3 + 1))


async def test_concurrent_publishers_share_transactions_and_arrive_in_order(backend: dict[str, Any]) -> None:
    settings = make_settings(WS_PUBLISH_BURST=500, WS_PUBLISH_RATE=500, WS_MAX_CONNECTIONS_PER_USER=50,
                             **backend)
    async with AppServer(settings) as server:
        async with server.client() as client:
            await register(client, "Grace")
            token = (await login(client, "grace"))["access_token"]
            for name in ("gc-a", "gc-b", "gc-c"):
                response = await client.post("/api/rooms", json={"name": name},
                                             headers={"Authorization": f"Bearer {token}"})
                assert response.status_code in (200, 201), response.text
        rooms = ["room:gc-a", "room:gc-b", "room:gc-c"]
        reader = await WsClient.connect(server.base_url, token)
        for room in rooms:
            assert (await reader.request("subscribe", channel=room))["ok"]
        writers = [await WsClient.connect(server.base_url, token) for _ in range(12)]
        batches_before = server.resources.node.commits.batches

        async def burst(index: int, writer: WsClient) -> list[tuple[str, int, int]]:
            sent = []
            for n in range(10):
                room = rooms[(index + n) % 3]
                reply = await writer.request("publish", channel=room, data={"text": f"{index}:{n}"})
                assert reply["ok"], reply
                sent.append((room, reply["offset"], n))
            return sent

        results = await asyncio.gather(*(burst(i, w) for i, w in enumerate(writers)))
        batches = server.resources.node.commits.batches - batches_before
        assert batches < 120, f"120 concurrent publishes took {batches} transactions"
        by_room: dict[str, list[int]] = {room: [] for room in rooms}
        for sent in results:
            for room, offset, _ in sent:
                by_room[room].append(offset)
        for room in rooms:
            assert sorted(by_room[room]) == list(range(1, len(by_room[room]) + 1))
        got = await reader.messages(120)
        for room in rooms:
            assert [m["offset"] for m in got if m["channel"] == room] == list(range(1, len(by_room[room]) + 1))
        for index in range(len(writers)):  # each writer's messages arrive in the order it sent them
            mine = [int(m["data"]["text"].split(":")[1]) for m in got if m["data"]["text"].startswith(f"{index}:")]
            assert mine == list(range(10))
        for conn in (reader, *writers):
            await conn.close()
