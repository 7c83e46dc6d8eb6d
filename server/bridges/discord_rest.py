"""Discord's HTTP API for the bridge: rate limits per route, a circuit breaker, an ordered queue.

**Routes and buckets.** Each call names its route (`"POST webhook"`, `"PATCH webhook/messages"`, …:
the method and the path with its minor ids left out, as Discord counts them). Every route has one
FIFO queue and one worker, so calls of a route go out one at a time in the order they were queued
(message order on Discord follows Vonix order). Before a call the worker waits while the route's
bucket is spent (`X-RateLimit-Remaining: 0` until `X-RateLimit-Reset-After`; routes that Discord
says share an `X-RateLimit-Bucket` share that state) and while a global limit lasts. A 429 is
waited out for its `retry_after` (the JSON body; the `Retry-After` header when the body has none)
and the same call is sent again, still at the head of its queue: order is kept.

**Circuit breaker.** The app's `server.infra.breaker.Breakers`, in its in-process form (no Redis:
one bridge process owns its view of Discord), fits a standalone process as is, so it is reused:
`BreakerPolicy(failure_threshold=5, reset_timeout=30)` by default. Network errors, timeouts and
5xx answers count as failures; 429s and other 4xx do not (Discord is up; a 4xx is our request's
fault and is dropped with a log line). While the breaker is open calls are not attempted: the
head of each queue waits until the breaker lets a trial through, and everything behind it waits
in the queue.

**Bounded queue.** At most `max_queue` calls (default 500) wait across all routes. When it is
full a new call is refused (`QueueFull`): the newest message is the one dropped, so what is
already queued keeps its order, and the caller logs it (`discord_outbound_dropped` with the Vonix
offset) and counts it in the health report.

Secrets: the webhook URL and the bot token never reach a log line or an error message here;
errors name the route and the status only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from server.infra.breaker import BreakerPolicy, Breakers, CircuitOpen
from server.observability.logging import get_logger

log = get_logger("vonix.discord.rest")

BREAKER = "discord"


class DiscordUnavailable(Exception):
    """Discord did not answer usefully (network error, timeout, 5xx): a breaker failure."""


class DiscordRefused(Exception):
    """A 4xx other than 429: our request is wrong (or the message is gone); not retried."""

    def __init__(self, route: str, status: int) -> None:
        super().__init__(f"{route}: HTTP {status}")
        self.route = route
        self.status = status


class QueueFull(Exception):
    pass


class Dropped(Exception):
    """The call was dropped (queue closed while it waited)."""


@dataclass
class _Bucket:
    remaining: int | None = None
    reset_at: float = 0.0


@dataclass
class _Call:
    route: str
    method: str
    url: str
    body: Any
    headers: dict[str, str]
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.monotonic)


class DiscordRest:
    def __init__(self, *, breakers: Breakers | None = None, max_queue: int = 500, timeout: float = 10.0,
                 on_change: Callable[[], None] | None = None, retry_cap: float = 5.0) -> None:
        self.breakers = breakers or Breakers(BreakerPolicy(failure_threshold=5, reset_timeout=30.0,
                                                           call_timeout=timeout))
        self.max_queue = max_queue
        self.retry_cap = retry_cap
        self.http = httpx.AsyncClient(timeout=timeout)
        self.on_change = on_change or (lambda: None)
        self.queues: dict[str, deque[_Call]] = {}
        self.wakeups: dict[str, asyncio.Event] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.route_bucket: dict[str, str] = {}
        self.buckets: dict[str, _Bucket] = {}
        self.global_until = 0.0
        self.last_error: str | None = None
        self.rate_limited = 0  # 429s seen
        self._closing = False
        self._idle = asyncio.Event()  # set whenever a call leaves a queue

    # --- queue -----------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return sum(len(q) for q in self.queues.values())

    async def breaker_state(self) -> str:
        return (await self.breakers.state(BREAKER)).state

    def submit(self, route: str, method: str, url: str, body: Any = None,
               headers: dict[str, str] | None = None) -> asyncio.Future[Any]:
        """Queue a call; the future resolves to the decoded JSON answer (None for 204) or raises
        DiscordRefused / Dropped. Raises QueueFull at once when `max_queue` calls wait."""
        if self._closing:
            raise Dropped("closing")
        if self.pending >= self.max_queue:
            raise QueueFull(route)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queues.setdefault(route, deque()).append(_Call(route, method, url, body, headers or {}, future))
        self.wakeups.setdefault(route, asyncio.Event()).set()
        if route not in self.workers or self.workers[route].done():
            self.workers[route] = asyncio.create_task(self._work(route), name=f"discord-route-{route}")
        self.on_change()
        return future

    async def call(self, route: str, method: str, url: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> Any:
        return await self.submit(route, method, url, body, headers)

    async def _work(self, route: str) -> None:
        queue = self.queues[route]
        wakeup = self.wakeups[route]
        while not self._closing:
            self._idle.set()
            if not queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            head = queue[0]
            if head.future.done():  # cancelled by its caller
                queue.popleft()
                continue
            try:
                result = await self._attempt(head)
            except DiscordRefused as exc:
                queue.popleft()
                head.future.set_exception(exc)
                self.on_change()
                continue
            except (DiscordUnavailable, CircuitOpen) as exc:
                await self._wait_after_failure(exc)
                continue
            queue.popleft()
            if not head.future.done():
                head.future.set_result(result)
            self.on_change()

    async def _wait_after_failure(self, exc: Exception) -> None:
        if isinstance(exc, CircuitOpen):
            await asyncio.sleep(min(max(exc.retry_in, 0.05), self.retry_cap))
        else:
            await asyncio.sleep(min(0.5, self.retry_cap))
        self.on_change()

    async def _attempt(self, call: _Call) -> Any:
        """One call, waiting out rate limits (a 429 repeats it); breaker failures raise."""
        while True:
            await self._wait_for_bucket(call.route)
            response = await self.breakers.call(BREAKER, lambda: self._send(call),
                                                is_failure=lambda exc: isinstance(exc, DiscordUnavailable))
            self._learn(call.route, response)
            if response.status_code == 429:
                self.rate_limited += 1
                retry_after = _retry_after(response)
                scope = "global" if _is_global(response) else "route"
                if scope == "global":
                    self.global_until = time.monotonic() + retry_after
                else:
                    bucket = self._bucket(call.route)
                    bucket.remaining, bucket.reset_at = 0, time.monotonic() + retry_after
                log.warning("discord_rate_limited", route=call.route, retry_after=retry_after, scope=scope)
                self.last_error = f"{call.route}: rate limited ({retry_after:g} s)"
                continue
            if response.status_code >= 400:
                self.last_error = f"{call.route}: HTTP {response.status_code}"
                log.warning("discord_call_refused", route=call.route, status=response.status_code)
                raise DiscordRefused(call.route, response.status_code)
            if response.status_code == 204 or not response.content:
                return None
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError:
                return None

    async def _send(self, call: _Call) -> httpx.Response:
        try:
            response = await self.http.request(
                call.method, call.url, content=orjson.dumps(call.body) if call.body is not None else None,
                headers={"Content-Type": "application/json", "User-Agent": "DiscordBot (vonix, 1)", **call.headers})
        except httpx.HTTPError as exc:  # the message may hold the URL: only the class is kept
            self.last_error = f"{call.route}: {exc.__class__.__name__}"
            log.warning("discord_call_failed", route=call.route, error=exc.__class__.__name__)
            raise DiscordUnavailable(self.last_error) from None
        if response.status_code >= 500:
            self.last_error = f"{call.route}: HTTP {response.status_code}"
            log.warning("discord_call_failed", route=call.route, status=response.status_code)
            raise DiscordUnavailable(self.last_error)
        return response

    # --- rate limits -----------------------------------------------------------------------------
    def _bucket(self, route: str) -> _Bucket:
        return self.buckets.setdefault(self.route_bucket.get(route, route), _Bucket())

    async def _wait_for_bucket(self, route: str) -> None:
        while True:
            now = time.monotonic()
            bucket = self._bucket(route)
            wait = max(self.global_until - now,
                       bucket.reset_at - now if bucket.remaining == 0 else 0.0)
            if wait <= 0:
                if bucket.remaining == 0:
                    bucket.remaining = None  # the window reset; the next answer says more
                return
            await asyncio.sleep(wait)

    def _learn(self, route: str, response: httpx.Response) -> None:
        headers = response.headers
        name = headers.get("x-ratelimit-bucket")
        if name:
            previous = self.route_bucket.get(route)
            self.route_bucket[route] = name
            if previous is None and route in self.buckets and name not in self.buckets:
                self.buckets[name] = self.buckets.pop(route)
        remaining, reset_after = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset-after")
        if remaining is not None and reset_after is not None:
            with contextlib.suppress(ValueError):
                bucket = self._bucket(route)
                bucket.remaining = int(remaining)
                bucket.reset_at = time.monotonic() + float(reset_after)
        if headers.get("x-ratelimit-global") and response.status_code == 429:
            self.global_until = time.monotonic() + _retry_after(response)

    # --- shutdown --------------------------------------------------------------------------------
    async def drain(self, seconds: float) -> int:
        """Wait up to `seconds` for the queues to empty; returns how many calls are left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.pending:
                    self._idle.clear()
                    await self._idle.wait()
        return self.pending

    async def close(self) -> None:
        self._closing = True
        for worker in self.workers.values():
            worker.cancel()
        for worker in self.workers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        for queue in self.queues.values():
            while queue:
                call = queue.popleft()
                if not call.future.done():
                    call.future.set_exception(Dropped("closing"))
                    call.future.exception()
        await self.http.aclose()


def _retry_after(response: httpx.Response) -> float:
    value: Any = None
    with contextlib.suppress(Exception):
        value = orjson.loads(response.content).get("retry_after")
    if value is None:
        value = response.headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), 300.0)
    except (TypeError, ValueError):
        return 1.0


def _is_global(response: httpx.Response) -> bool:
    if response.headers.get("x-ratelimit-global"):
        return True
    with contextlib.suppress(Exception):
        return bool(orjson.loads(response.content).get("global"))
    return False
