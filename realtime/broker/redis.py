"""Redis pub/sub broker written directly on redis-py.

Why not broadcaster's redis backend: with redis-py 8 it subscribes but never delivers (it flags
itself ready before awaiting the subscription), and it gives every subscriber an unbounded queue.
Here one reader task per replica reads the subscriber connection and hands each message to the
node's handler synchronously, so there is no queue to grow; backpressure is per connection, in
the hub. The reader reconnects with capped, jittered exponential backoff and resubscribes every
channel; `on_state(False/True)` tells the node so it can report degradation and let clients
recover what they missed from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.broker.base import MessageHandler, StateHandler
from realtime.logs import get_logger

log = get_logger("vonix.broker")


def _drop(channel: str, message: bytes) -> None:
    return None


class RedisBroker:
    def __init__(
        self,
        publisher: aioredis.Redis,
        subscriber: aioredis.Redis,
        *,
        prefix: str = "vonix:",
        metrics: Any = None,
    ) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.prefix = prefix
        self.on_message: MessageHandler = _drop
        self.on_state: StateHandler | None = None
        self._channels: set[str] = set()
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = False
        self._closing = False
        self._subscribe_lock = asyncio.Lock()
        self._confirmations: dict[str, list[asyncio.Future[None]]] = {}
        self._reconnects = metrics.counter(
            "vonix_broker_reconnects_total", "Times the broker re-established its Redis subscription."
        ) if metrics is not None else None

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="redis-broker-reader")

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def publish(self, channel: str, message: bytes) -> None:
        """Raises RedisError/OSError when Redis is unreachable; callers decide how to degrade."""
        await self.publisher.publish(self.prefix + channel, message)

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis confirmed the subscription, so nothing published after it is missed."""
        confirmed: asyncio.Future[None] | None = None
        async with self._subscribe_lock:
            self._channels.add(channel)
            if self._pubsub is not None and self._connected:
                confirmed = asyncio.get_running_loop().create_future()
                self._confirmations.setdefault(self.prefix + channel, []).append(confirmed)
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.subscribe(self.prefix + channel)
        if confirmed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(confirmed, timeout=2.0)

    async def unsubscribe(self, channel: str) -> None:
        async with self._subscribe_lock:
            self._channels.discard(channel)
            if self._pubsub is not None and self._connected:
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.unsubscribe(self.prefix + channel)

    def _confirm(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        for waiter in self._confirmations.pop(name, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _set_state(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if self.on_state is not None:
            result = self.on_state(connected)
            if asyncio.iscoroutine(result):
                await result

    async def _connect(self) -> None:
        self._pubsub = self.subscriber.pubsub(ignore_subscribe_messages=False)
        # A subscription to a private channel opens the connection even with no user channels.
        await self._pubsub.subscribe(self.prefix + "_sys:broker-alive")
        async with self._subscribe_lock:
            channels = [self.prefix + c for c in self._channels]
            if channels:
                await self._pubsub.subscribe(*channels)
            await self._set_state(True)

    async def _run(self) -> None:
        delay = 0.05
        first = True
        prefix_length = len(self.prefix)
        while not self._closing:
            try:
                await self._connect()
                if not first and self._reconnects is not None:
                    self._reconnects.inc()
                    log.info("broker_reconnected", channels=len(self._channels))
                first = False
                delay = 0.05
                handler = self.on_message
                while True:
                    message = await self._pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] != "message":
                        if message["type"] == "subscribe":
                            self._confirm(message["channel"])
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    handler = self.on_message
                    handler(channel[prefix_length:], message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError, RedisError, OSError) as exc:
                await self._set_state(False)
                log.warning("broker_disconnected", error=f"{exc.__class__.__name__}: {exc}",
                            retry_in=round(delay, 2))
            except Exception:
                await self._set_state(False)
                log.exception("broker_reader_failed")
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                self._pubsub = None
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
