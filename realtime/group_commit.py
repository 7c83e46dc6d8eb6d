"""Group commit for persisted channels: store a batch, then publish it, in order.

Why: a chat message must be committed before anyone sees it, and one transaction per message
made the database round trips and the per-statement CPU the limit of a busy replica. Publishers
queue their message here and wait; one drain task takes everything queued, stores it through
`hooks.persist_many` (one transaction) and hands the stored messages to the history in one
pipelined call. While a batch is being committed the next one gathers, so batches grow with the
load and the cost per message falls.

The commit window: under load, batches start at most once per `window` seconds (the first
message after a quiet spell is committed at once). A fast database otherwise answers before many
publishers have queued, and every batch has a fixed cost (a database call, a Redis script call,
their wake-ups) that dwarfs a message's own. Rooms benchmark, 2,000 messages/s on PostgreSQL: no
window, batches of ~3.6 and 30 ms of server CPU per 1,000 deliveries; 5 ms, ~14 and 23 ms; 10 ms
(the default), ~28 and 21 ms, for a median latency of ~11 ms instead of ~4. PostgreSQL's
`commit_delay` trades the same way for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from realtime.connection import ConnUser
from realtime.history.base import FrameParts, History
from realtime.hooks import ChannelHooks, PendingMessage, Persisted
from realtime.logs import get_logger

log = get_logger("vonix.node")

DeliverLocal = Callable[[str, int, bytes, float], None]
UNPUBLISHED_MAX = 10_000  # messages kept to publish again after a failed publish (all channels)


@dataclass(slots=True)
class StoreRequest(PendingMessage):
    context: contextvars.Context | None = None  # the publisher's, when tracing: spans nest under it
    future: asyncio.Future[Persisted] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    def __init__(self, hooks: ChannelHooks, history: History, deliver_local: DeliverLocal, *,
                 max_batch: int = 256, window: float = 0.0, eager_batch: int = 32) -> None:
        self.hooks = hooks
        self.history = history
        self.deliver_local = deliver_local
        self.max_batch = max_batch
        self.window = window
        self._next_batch_at = 0.0  # loop time before which no batch starts (the commit window)
        self.traced = False  # set when the host traces: each batch runs in its first publisher's context
        self._queue: list[StoreRequest] = []
        self._drainer: asyncio.Task[None] | None = None
        # Batches of this size start without waiting for the window (the window exists to gather
        # batches about this big: ~28 at 2,000 messages/s and 10 ms).
        self.eager_batch = eager_batch
        self._full = asyncio.Event()
        self.batches = 0  # committed batches (stats, tests)
        # channel -> highest offset delivered while the history could not be reached: bounded by
        # the channels that saw an outage, each entry dropped by the next successful publish.
        self._skipped: dict[str, int] = {}
        # channel -> the task releasing its messages parked behind a missing offset (one per channel
        # that has any; each ends when none is left).
        self._parked: dict[str, asyncio.Task[None]] = {}
        # channel -> messages stored and delivered here whose publish failed, in offset order: sent
        # again until the history takes them (`_republish`), dropped once a later publish of the
        # channel succeeded (the history then moved past them, and the others fill from the
        # database). Bounded: past UNPUBLISHED_MAX the others rely on that fill alone.
        self._unpublished: dict[str, list[tuple[FrameParts, int, str]]] = {}
        self._republisher: asyncio.Task[None] | None = None

    async def store(self, user: ConnUser | None, channel: str, data: Any, nonce: str | None,
                    ts: float) -> Persisted:
        return await self.enqueue(user, channel, data, nonce, ts)

    def enqueue(self, user: ConnUser | None, channel: str, data: Any, nonce: str | None,
                ts: float) -> asyncio.Future[Persisted]:
        """Queue a message without waiting for it: messages are stored and published in the order
        they were queued, so a publisher may keep many in flight (pipelining) and keep its order."""
        request = StoreRequest(user, channel, data, nonce, ts,
                               contextvars.copy_context() if self.traced else None)
        self._queue.append(request)
        if len(self._queue) >= self.eager_batch:
            self._full.set()
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="group-commit")
        return request.future

    async def wait_idle(self) -> None:
        """Until everything queued so far is stored and published (drain, shutdown)."""
        while self._drainer is not None:
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.window:
                    wait = self._next_batch_at - loop.time()
                    if wait > 0 and len(self._queue) < self.eager_batch:
                        # A full enough batch need not wait out the window: a pipelining publisher
                        # (50 in flight) would otherwise get at most one batch per window.
                        self._full.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._full.wait(), wait)
                    self._next_batch_at = loop.time() + self.window
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                context = batch[0].context
                if context is None:
                    await self._commit(batch)
                else:
                    await asyncio.get_running_loop().create_task(self._commit(batch), context=context)
        except BaseException:
            queued, self._queue = self._queue, []
            for request in queued:
                request.future.set_exception(RuntimeError("the server is stopping"))
            raise
        finally:
            self._drainer = None

    async def _commit(self, batch: list[StoreRequest]) -> None:
        try:
            outcomes = await self._persist(batch)
            stored = [(r, o) for r, o in zip(batch, outcomes, strict=True)
                      if isinstance(o, Persisted) and not o.duplicate]
            if stored:
                await self._publish(stored)
        except BaseException:  # cancelled (shutdown): no publisher may be left waiting forever
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(RuntimeError("the server is stopping"))
            raise
        self.batches += 1
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.done():  # its publisher went away; the message was still stored
                continue
            if isinstance(outcome, Persisted):
                request.future.set_result(outcome)
            else:
                request.future.set_exception(outcome)

    async def _persist(self, batch: Sequence[StoreRequest]) -> list[Persisted | Exception]:
        try:
            return await self.hooks.persist_many(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        # One bad message must not fail its neighbours: store them one by one.
        outcomes: list[Persisted | Exception] = []
        for request in batch:
            try:
                outcomes.extend(await self.hooks.persist_many([request]))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _publish(self, stored: list[tuple[StoreRequest, Persisted]]) -> None:
        try:
            for channel in {request.channel for request, _ in stored} & self._skipped.keys():
                await self.history.skip_to(channel, self._skipped[channel])
                del self._skipped[channel]
            parked = await self.history.publish_stored([(r.channel, p.parts, p.offset, p.epoch) for r, p in stored])
        except Exception as exc:
            # Stored but the broker is unreachable: deliver on this replica now, and publish again
            # until the history takes them. The others would otherwise hear of them only when
            # their broker reconnects (its catch-up reads the database) or when the channel's
            # next message shows the gap; after a Redis failover their brokers may be back before
            # this publish failed, and a quiet DM may have no next message (seen in the soak).
            log.warning("publish_degraded_local_only", messages=len(stored), error=exc.__class__.__name__)
            for request, persisted in stored:
                self._skipped[request.channel] = max(self._skipped.get(request.channel, -1), persisted.offset)
                self.deliver_local(request.channel, persisted.offset,
                                   persisted.parts.build(persisted.offset, persisted.epoch), request.ts)
            self._keep_unpublished([(r.channel, p.parts, p.offset, p.epoch) for r, p in stored])
            return
        if self._unpublished:  # (only after an outage: nothing to do per batch otherwise)
            for request, _ in stored:
                self._unpublished.pop(request.channel, None)  # the history is past them now
        if parked:
            self._watch_parked(parked)

    def _watch_parked(self, parked: set[str]) -> None:
        for channel in parked:
            if channel not in self._parked:
                self._parked[channel] = asyncio.get_running_loop().create_task(
                    self._release_parked(channel), name="release-parked")

    def _keep_unpublished(self, messages: list[tuple[str, FrameParts, int, str]]) -> None:
        kept = sum(len(entries) for entries in self._unpublished.values())
        for channel, parts, offset, epoch in messages:
            if kept >= UNPUBLISHED_MAX:
                log.warning("unpublished_dropped", channel=channel, offset=offset)
                continue
            self._unpublished.setdefault(channel, []).append((parts, offset, epoch))
            kept += 1
        if self._unpublished and self._republisher is None:
            self._republisher = asyncio.get_running_loop().create_task(self._republish(), name="republish")

    async def _republish(self) -> None:
        """Publish again what failed to publish, with a backoff (0.5 s to 5 s) while it fails.
        Safe to repeat: the history script ignores offsets it has seen, and nodes de-duplicate
        deliveries by offset (this replica delivered them already)."""
        delay = 0.5
        try:
            while self._unpublished:
                await asyncio.sleep(delay)
                taken, self._unpublished = self._unpublished, {}
                try:
                    parked = await self.history.publish_stored(
                        [(channel, parts, offset, epoch) for channel, entries in taken.items()
                         for parts, offset, epoch in entries])
                except Exception as exc:
                    log.info("republish_failed", channels=len(taken), error=exc.__class__.__name__)
                    for channel, entries in taken.items():  # older first, before any added meanwhile
                        self._unpublished[channel] = entries + self._unpublished.get(channel, [])
                    delay = min(delay * 2, 5.0)
                    continue
                log.info("republished", channels=len(taken), messages=sum(len(e) for e in taken.values()))
                for channel, entries in taken.items():
                    if self._skipped.get(channel, -1) <= max(offset for _, offset, _ in entries):  # all in now
                        self._skipped.pop(channel, None)
                self._watch_parked(parked)
                delay = 0.5
        finally:
            self._republisher = None

    async def _release_parked(self, channel: str) -> None:
        """Until nothing of `channel` waits in the history for a missing offset: release what went
        stale when it is due. Without this the history looks again only when the channel's next
        message comes, and on a quiet channel that may be never (realtime/history/redis.py)."""
        try:
            due = await self.history.release_stale(channel)
            while due is not None:
                await asyncio.sleep(due + 0.05)
                due = await self.history.release_stale(channel)
        except Exception as exc:  # Redis away: the next message of the channel releases them
            log.warning("release_parked_failed", channel=channel, error=exc.__class__.__name__)
        finally:
            self._parked.pop(channel, None)

    async def close(self) -> None:
        """Stop the release and republish timers (shutdown); whatever waits is released by the
        channel's next message on any replica, and the others fill from the database."""
        tasks = list(self._parked.values())
        if self._republisher is not None:
            tasks.append(self._republisher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

