"""Calls that arrive together go to the store together: one round trip for a crowd.

After a deploy thousands of clients reconnect at once, and each used to cost its own Redis round
trip to join presence and to be counted against the per-user cap. `Batcher` queues the calls made
while the previous batch is in flight (or within the current event-loop iteration when idle) and
hands them to one bulk function, which pipelines them. One batch at a time keeps the calls in
order, so a join and the leave that follows it can never be applied the other way round; under
load the batches simply grow, as with the group commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    def __init__(self, run_many: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]], *,
                 max_batch: int = 2000) -> None:
        self._run_many = run_many
        self.max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._scheduled = False
        self._running = False
        self.batches = 0  # how many bulk calls were made (tests, stats)
        self.items = 0  # how many calls they carried (batches/items: the crowd a round trip serves)

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled and not self._running:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    async def many(self, items: Sequence[Item]) -> list[Result]:
        """Several calls from one caller (a connection's rooms when it leaves): queued together,
        awaited in place, with no task or gather per item."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        if futures and not self._scheduled and not self._running:
            self._scheduled = True
            loop.call_soon(self._start)
        try:
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # one failure is enough to hear: mark the others' as heard
                if future.done() and not future.cancelled():
                    future.exception()
                else:
                    future.cancel()
            raise

    def _start(self) -> None:
        self._scheduled = False
        if self._running or not self._pending:
            return
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        self._running = True
        asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._run_many([item for item, _ in batch])
        except BaseException as exc:  # every caller hears the failure; the batcher goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._running = False
            if self._pending:
                self._start()
