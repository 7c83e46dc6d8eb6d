"""Redis pub/sub broker: redis-py publishes, our own subscriber connection reads.

Why not broadcaster's redis backend: with redis-py 8 it subscribes but never delivers (it flags
itself ready before awaiting the subscription), and it gives every subscriber an unbounded queue.
Why not redis-py's PubSub for reading: per message it was the costliest step left on a busy
replica (see `subscriber.py`). Here one subscriber connection per replica hands each message to
the node's handler synchronously, straight from the socket read, so there is no queue to grow;
backpressure is per connection, in the hub. A supervisor task reconnects with capped, jittered
exponential backoff and resubscribes every channel; `on_state(False/True)` tells the node so it
can report degradation and let clients recover what they missed from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import redis.asyncio as aioredis

from realtime.broker.base import MessageHandler, StateHandler, notify_state
from realtime.broker.subscriber import SubscriberError, SubscriberProtocol, hold, open_subscriber
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
        ping_every: float = 15.0,
        ping_within: float = 5.0,
    ) -> None:
        self.publisher = publisher
        self.subscriber = subscriber  # its connection settings; the connection itself is ours
        self.prefix = prefix
        self.ping_every = ping_every  # a quiet line is PINGed; no PONG within `ping_within`: reconnect
        self.ping_within = ping_within
        self.on_message: MessageHandler = _drop
        self.on_state: StateHandler | None = None
        self._channels: set[str] = set()
        self._names: dict[bytes, str] = {}  # wire name -> channel: no slicing or decoding per message
        self._connection: SubscriberProtocol | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = False
        self._closing = False
        self._confirmations: dict[bytes, list[asyncio.Future[None]]] = {}
        self._reconnects = metrics.counter(
            "vonix_broker_reconnects_total", "Times the broker re-established its Redis subscription."
        ) if metrics is not None else None

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._run(), name="redis-broker-subscriber")

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        if self._connection is not None:
            self._connection.close()

    async def publish(self, channel: str, message: bytes) -> None:
        """Raises RedisError/OSError when Redis is unreachable; callers decide how to degrade."""
        await self.publisher.publish(self.prefix + channel, message)

    def _wire(self, channel: str) -> bytes:
        wire = (self.prefix + channel).encode()
        self._names[wire] = channel
        return wire

    async def subscribe(self, channel: str) -> None:
        """Returns once Redis confirmed the subscription, so nothing published after it is missed."""
        self._channels.add(channel)
        wire = self._wire(channel)
        connection = self._connection
        if connection is None:
            return  # subscribed with every other channel when the connection (re)opens
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations.setdefault(wire, []).append(confirmed)
        connection.send("SUBSCRIBE", wire)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(confirmed), timeout=2.0)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        wire = (self.prefix + channel).encode()
        self._names.pop(wire, None)
        if self._connection is not None:
            self._connection.send("UNSUBSCRIBE", wire)

    def _deliver(self, wire: bytes, payload: bytes) -> None:
        channel = self._names.get(wire)
        if channel is not None:  # a message racing its UNSUBSCRIBE is nobody's
            self.on_message(channel, payload)

    def _confirm(self, wire: bytes) -> None:
        for waiter in self._confirmations.pop(wire, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _set_state(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        await notify_state(self.on_state, connected)

    async def _connect(self) -> SubscriberProtocol:
        connection = self._connection = await open_subscriber(self.subscriber, self._deliver, self._confirm)
        # From here `subscribe` sends on this connection itself; every channel added before is in
        # this list (no await in between). A private channel opens the subscribed state even
        # with no user channel yet.
        wires = [self._wire("_sys:broker-alive"), *(self._wire(c) for c in self._channels)]
        waiters = []
        for wire in wires:
            waiter = asyncio.get_running_loop().create_future()
            self._confirmations.setdefault(wire, []).append(waiter)
            waiters.append(waiter)
        connection.send("SUBSCRIBE", *wires)
        confirmed = asyncio.gather(*waiters)
        confirmed.add_done_callback(lambda f: f.cancelled() or f.exception())
        watched: list[asyncio.Future[Any]] = [connection.lost, confirmed]
        done, _ = await asyncio.wait(watched, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
        if confirmed not in done:
            raise SubscriberError("the subscriptions were not confirmed")
        return connection

    async def _run(self) -> None:
        delay = 0.05
        first = True
        while not self._closing:
            try:
                connection = await self._connect()
                await self._set_state(True)
                if not first and self._reconnects is not None:
                    self._reconnects.inc()
                    log.info("broker_reconnected", channels=len(self._channels))
                first = False
                delay = 0.05
                await hold(connection, every=self.ping_every, answer_within=self.ping_within)
            except asyncio.CancelledError:
                raise
            except (SubscriberError, OSError) as exc:
                await self._set_state(False)
                log.warning("broker_disconnected", error=f"{exc.__class__.__name__}: {exc}",
                            retry_in=round(delay, 2))
            except Exception:
                await self._set_state(False)
                log.exception("broker_reader_failed")
            finally:
                # Whoever waits for a confirmation stops waiting: the channel is in `_channels`,
                # so the next connection subscribes it, and the node catches up after outages.
                for waiters in self._confirmations.values():
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                self._confirmations.clear()
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
