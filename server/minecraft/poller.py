"""The status poller: one replica at a time dials every game server each MC_STATUS_INTERVAL.

Leadership is the lock `mc-status-poller` (`resources.locks`: Redis in scaled mode) taken with a
TTL of `LEASE` intervals and extended every third of it by a keeper task. The leader stops polling
as soon as an extension fails (another replica may hold it by then); at shutdown it releases the
lock, so another replica takes over within `RETRY` intervals; if it dies without releasing, the
lock expires and another replica takes over within LEASE + RETRY (< 1) interval.

A round dials every server concurrently (at most `CONCURRENCY` at once), each through its own
circuit breaker `mc:<id>` (`resources.breakers`): a server that keeps failing is reported offline
with reason `breaker_open` without being dialled until the breaker's reset timeout lets a trial
through. A round never raises: a server that answers garbage, hangs or closes early is offline
with a reason (server/minecraft/ping.py) and the next server is polled all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from server.infra.breaker import CircuitOpen
from server.minecraft import ping
from server.minecraft.ping import PingResult
from server.observability.logging import get_logger

if TYPE_CHECKING:
    from server.minecraft.status import StatusService

log = get_logger("vonix.minecraft.poller")

LOCK_KEY = "mc-status-poller"
LEASE = 0.6  # lock TTL, in intervals
RETRY = 0.2  # how often a follower tries to take the lock, in intervals
CONCURRENCY = 32
OUTCOMES = ("online", *ping.REASONS, "breaker_open")


class _Offline(Exception):
    """A poll that found the server offline: a failure for its circuit breaker."""

    def __init__(self, result: PingResult) -> None:
        super().__init__(result.reason)
        self.result = result


class Poller:
    def __init__(self, service: StatusService, resources: Any, interval: float, timeout: float) -> None:
        self.service = service
        self.resources = resources
        self.interval = interval
        self.timeout = timeout
        self.rounds = 0  # rounds this replica ran as the leader (tests count them)
        self.leading = False
        metrics = resources.metrics
        self._polls = metrics.counter("vonix_mc_polls_total", "Game server polls by outcome.", ("outcome",))
        for outcome in OUTCOMES:
            self._polls.labels(outcome)
        self._duration = metrics.histogram("vonix_mc_poll_duration_seconds", "Time to poll one game server.",
                                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self._round = metrics.histogram("vonix_mc_poll_round_seconds", "Time to poll every game server once.",
                                        buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30))
        self._leader = metrics.gauge("vonix_mc_poller_leader", "1 on the replica that polls the game servers.")

    # --- leadership ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: take the lock when free, poll while holding it; cancelled at shutdown."""
        lock = self.resources.locks
        ttl = self.interval * LEASE
        while True:
            try:
                token = await lock.acquire(LOCK_KEY, ttl)
            except Exception as exc:  # the lock store is down: nobody polls, try again soon
                log.warning("mc_poller_lock_failed", error=exc.__class__.__name__)
                token = None
            if token is None:
                await asyncio.sleep(self.interval * RETRY)
                continue
            try:
                await self._lead(token, ttl)
            finally:
                self.leading = False
                self._leader.set(0)
                with contextlib.suppress(Exception):
                    await asyncio.shield(lock.release(LOCK_KEY, token))

    async def _lead(self, token: str, ttl: float) -> None:
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep(token, ttl, lost), name="mc-poller-lock-keeper")
        self.leading = True
        self._leader.set(1)
        log.info("mc_poller_leading", instance=self.resources.settings.instance_id)
        try:
            while not lost.is_set():
                started = time.monotonic()
                await self.round()
                remaining = self.interval - (time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=max(0.0, remaining))
            log.warning("mc_poller_lock_lost")
        finally:
            keeper.cancel()
            await asyncio.wait([keeper])

    async def _keep(self, token: str, ttl: float, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                kept = await self.resources.locks.extend(LOCK_KEY, token, ttl)
            except Exception:
                kept = False
            if not kept:
                lost.set()
                return

    # --- polling ---------------------------------------------------------------------------------
    async def round(self) -> int:
        """Poll every server once (concurrently); the number polled. Never raises."""
        started = time.perf_counter()
        try:
            rows = await self.service.rows()
        except Exception as exc:
            log.warning("mc_poll_round_failed", error=exc.__class__.__name__)
            return 0
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(row: Any) -> None:
            async with gate:
                await self.poll(row)

        await asyncio.gather(*(one(row) for row in rows))
        self.rounds += 1
        self._round.observe(time.perf_counter() - started)
        return len(rows)

    async def poll(self, row: Any) -> PingResult | None:
        """Dial one server through its breaker, store the sample and the status; never raises."""
        started = time.perf_counter()
        try:
            result = await self.dial(row)
            self._polls.labels("online" if result.online else result.reason or "bad_response").inc()
            self._duration.observe(time.perf_counter() - started)
            await self.service.record(int(row["id"]), result)
            return result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("mc_poll_failed", server_id=row["id"])
            return None

    async def dial(self, row: Any) -> PingResult:
        host, port, edition = row["host"], int(row["port"]), row["edition"]

        async def attempt() -> PingResult:
            result = await ping.query(host, port, edition, self.timeout)
            if not result.online:
                raise _Offline(result)
            return result

        try:
            return await self.resources.breakers.call(f"mc:{row['id']}", attempt,
                                                      is_failure=lambda exc: isinstance(exc, _Offline | TimeoutError))
        except _Offline as offline:
            return offline.result
        except CircuitOpen:
            return PingResult.offline("breaker_open")
        except TimeoutError:  # the breaker's own call timeout, when shorter than MC_STATUS_TIMEOUT
            return PingResult.offline("timeout")
