"""Room memberships that the cache misses together are read in one query (server/services/
channels.py): after a restart every member's first message misses at once, and one query per
member backed the rooms benchmark up for seconds."""

from __future__ import annotations

import asyncio
from typing import Any

from server.cache import Cache
from server.db.queries import users
from server.services.channels import Channels


async def test_a_crowd_of_membership_misses_costs_one_query(database: Any) -> None:
    member_ids = [await users.insert(database, username=f"member{n}", role="member") for n in range(30)]
    outsider = await users.insert(database, username="outsider", role="member")
    channels = Channels(database, Cache())
    rooms = []
    for n in range(3):
        row = await channels.create_room(f"room{n}", owner_id=member_ids[0], private=False, topic=None)
        for user_id in member_ids[1:]:
            await channels.add_member(row.id, user_id, "moderator" if user_id == member_ids[n + 1] else "member")
        rooms.append(await channels.meta(row.name))

    asks = [(room, user_id) for room in rooms for user_id in [*member_ids, outsider]]
    answers = await asyncio.gather(*(channels.membership(room, user_id) for room, user_id in asks))

    assert channels._member_loads.batches == 1  # 93 misses, one read
    for (room, user_id), answer in zip(asks, answers, strict=True):
        index = rooms.index(room)
        expected = None if user_id == outsider else \
            ("owner" if user_id == member_ids[0] else "moderator" if user_id == member_ids[index + 1] else "member")
        assert (answer[0] if answer else None) == expected, (room.name, user_id)
    # cached now: asking again reads nothing
    await asyncio.gather(*(channels.membership(room, user_id) for room, user_id in asks))
    assert channels._member_loads.batches == 1
