"""The Batcher (one bulk call per batch, in order, one batch at a time) and the presence feed's
coalescing (one diff per channel per interval; a join and leave in one interval cancel out)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import orjson
import pytest

from realtime.batching import Batcher
from realtime.presence.base import PresenceUser
from realtime.presence.feed import PresenceFeed
from realtime.presence.memory import MemoryPresence


def doubling(calls: list[list[int]]) -> Callable[[Sequence[int]], Awaitable[list[int]]]:
    """A bulk call that takes a moment, doubles each item and records every batch it was given."""
    async def double(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        return [2 * i for i in items]
    return double


async def flaky(items: Sequence[int]) -> list[int]:
    """A bulk call that fails for any batch holding 13."""
    if 13 in items:
        raise ConnectionError("down")
    return list(items)


async def test_calls_made_together_share_one_bulk_call_in_order() -> None:
    calls: list[list[int]] = []
    double = doubling(calls)

    batcher: Batcher[int, int] = Batcher(double)
    first = await asyncio.gather(*(batcher(i) for i in range(5)))
    assert first == [0, 2, 4, 6, 8] and calls == [[0, 1, 2, 3, 4]]
    # While a batch is in flight, new calls wait for it and then go together, still in order.
    started = asyncio.ensure_future(asyncio.gather(*(batcher(i) for i in range(3))))
    await asyncio.sleep(0.001)
    later = await asyncio.gather(*(batcher(i) for i in range(10, 14)))
    assert await started == [0, 2, 4] and later == [20, 22, 24, 26]
    assert calls[1:] == [[0, 1, 2], [10, 11, 12, 13]] and batcher.batches == 3 and batcher.items == 12


async def test_a_failed_bulk_call_fails_its_callers_and_the_next_batch_runs() -> None:
    batcher: Batcher[int, int] = Batcher(flaky)
    results = await asyncio.gather(batcher(1), batcher(13), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await batcher(2) == 2


async def test_many_queues_one_callers_items_with_the_crowd_in_one_bulk_call() -> None:
    calls: list[list[int]] = []
    double = doubling(calls)

    batcher: Batcher[int, int] = Batcher(double, max_batch=4)
    single, several = await asyncio.gather(batcher(1), batcher.many([2, 3, 4, 5, 6]))
    # In order, split where a batch is full, each result to its own item.
    assert single == 2 and several == [4, 6, 8, 10, 12] and calls == [[1, 2, 3, 4], [5, 6]]
    assert await batcher.many([]) == [] and len(calls) == 2


async def test_many_fails_as_a_whole_and_leaves_no_unheard_failure() -> None:
    loop = asyncio.get_running_loop()
    unheard: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: unheard.append(context))

    batcher: Batcher[int, int] = Batcher(flaky, max_batch=2)
    with pytest.raises(ConnectionError):
        await batcher.many([13, 1, 13, 2])
    await asyncio.sleep(0.01)
    import gc

    gc.collect()
    loop.set_exception_handler(None)
    assert unheard == [] and await batcher.many([5, 6]) == [5, 6]


class Published:
    def __init__(self) -> None:
        self.frames: list[dict[str, object]] = []

    async def __call__(self, channel: str, frame: bytes) -> None:
        self.frames.append(orjson.loads(frame))


def user(i: int) -> PresenceUser:
    return PresenceUser(i, f"u{i}")


async def test_edges_within_an_interval_become_one_diff_per_channel() -> None:
    presence, published = MemoryPresence(), Published()
    feed = PresenceFeed(presence, published, interval=0.05)
    await asyncio.gather(*(feed.join(["room:a"], f"c{i}", user(i)) for i in range(50)),
                         feed.join(["room:b"], "x", user(1)), feed.join(["room:a"], "second-tab", user(3)))
    await feed.leave(["room:a"], "c7", user(7))  # joined and left within the interval: never announced
    assert published.frames == []
    await asyncio.sleep(0.1)
    by_channel = {f["channel"]: f for f in published.frames}
    assert len(published.frames) == 2
    assert [u["id"] for u in by_channel["room:a"]["joins"]] == [i for i in range(50) if i != 7]  # type: ignore[union-attr]
    assert by_channel["room:a"]["leaves"] == [] and by_channel["room:b"]["joins"] == [{"id": 1, "username": "u1"}]
    await feed.leave(["room:a"], "c3", user(3))  # user 3 still has a second tab: no edge
    await feed.leave(["room:a"], "c4", user(4))
    await asyncio.sleep(0.1)
    assert published.frames[-1] == {"op": "presence_diff", "channel": "room:a", "joins": [],
                                    "leaves": [{"id": 4, "username": "u4"}]}
    assert len(published.frames) == 3 and feed.diffs_sent == 3
    # A connection that leaves several rooms at once (it closed) is one batch, one edge per room.
    await feed.join(["room:b", "room:c"], "y", user(9))
    batches = feed._changes.batches
    await feed.leave(["room:a", "room:b", "room:c"], "second-tab", user(3))
    assert feed._changes.batches == batches + 1
    await feed.leave(["room:b", "room:c"], "y", user(9))
    await asyncio.sleep(0.1)
    assert {f["channel"]: f["leaves"] for f in published.frames[3:]} == {
        "room:a": [{"id": 3, "username": "u3"}]}  # user 9 came and went within one interval


@pytest.mark.parametrize("interval", [0.0])
async def test_interval_zero_sends_each_edge_at_once(interval: float) -> None:
    published = Published()
    feed = PresenceFeed(MemoryPresence(), published, interval=interval)
    for i in range(3):
        await feed.join(["room:a"], f"c{i}", user(i))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert [[u["id"] for u in f["joins"]] for f in published.frames] == [[0], [1], [2]]  # type: ignore[union-attr]
    await feed.close()


def test_ids_are_fixed_length_unique_and_apart_between_processes() -> None:
    from realtime.ids import IdMaker

    one, other = IdMaker(), IdMaker(digits=8)
    made = [one() for _ in range(1000)]
    assert len(set(made)) == 1000 and {len(i) for i in made} == {32}
    assert all(int(i, 16) >= 0 for i in made)  # hex, like the uuid4().hex it replaces
    assert len(other()) == 20 and one.prefix != other.prefix
