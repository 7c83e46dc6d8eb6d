"""Keyset history pages stay stable and gap-free while messages are inserted concurrently."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from server.db.database import Database
from server.db.queries import messages as history
from server.db.queries.message_batch import NewMessage, StoredOffset, store_batch
from server.db.tables import channels
from server.db.types import utcnow


async def _channel(db: Database, name: str) -> int:
    await db.execute("test.channel", channels.insert().values(
        name=name, kind="room", last_offset=0, created_at=utcnow()))
    return int(await db.fetch_val("test.channel_id", sa.select(channels.c.id).where(channels.c.name == name)))


async def _post(db: Database, channel_id: int, text: str) -> int:
    [stored] = await store_batch(db, [NewMessage(channel_id, None, text, {"text": text}, None, utcnow())])
    assert isinstance(stored, StoredOffset)
    return stored.offset


async def test_pages_are_gap_free_under_concurrent_inserts(database: Database) -> None:
    channel_id = await _channel(database, "room:paging")
    for i in range(150):
        await _post(database, channel_id, f"before {i}")
    snapshot_top = 150

    stop = asyncio.Event()

    async def writer(tag: str) -> int:
        count = 0
        while not stop.is_set() and count < 120:
            await _post(database, channel_id, f"{tag} {count}")
            count += 1
            await asyncio.sleep(0)
        return count

    writers = [asyncio.create_task(writer(f"w{i}")) for i in range(3)]

    forward: list[int] = []
    after = 0
    while True:
        page = await history.history_after(database, channel_id, after, 25)
        if not page:
            break
        forward.extend(m.offset for m in page)
        after = page[-1].offset
        await asyncio.sleep(0.001)
        if after >= snapshot_top + 200:
            break

    backward: list[int] = []
    before: int | None = snapshot_top + 1
    while True:
        page = await history.history_before(database, channel_id, before, 20)
        if not page:
            break
        backward.extend(m.offset for m in page)
        before = page[-1].offset
        await asyncio.sleep(0.001)

    stop.set()
    written = sum(await asyncio.gather(*writers))

    assert forward == list(range(1, len(forward) + 1)), "forward pages skip or repeat offsets"
    assert len(forward) >= snapshot_top
    assert backward == list(range(snapshot_top, 0, -1)), "scroll-back is not stable"
    everything = await history.history_after(database, channel_id, 0, 200)
    while page := await history.history_after(database, channel_id, everything[-1].offset, 200):
        everything += page
    assert [m.offset for m in everything] == list(range(1, snapshot_top + written + 1))
    assert everything[0].body == "before 0" and everything[0].data == {"text": "before 0"}
