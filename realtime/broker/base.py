"""The broker interface: publish bytes on a channel, receive what others published.

A replica subscribes to a broker channel when its first local subscriber arrives and unsubscribes
when the last leaves, so Redis sends each replica only what its clients want (never a firehose).
Delivery goes to one handler (the node), which fans out locally; the broker never sees clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

MessageHandler = Callable[[str, bytes], None]
StateHandler = Callable[[bool], Awaitable[None] | None]


class Broker(Protocol):
    """What the node needs from a fan-out backend."""

    on_message: MessageHandler
    on_state: StateHandler | None

    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, message: bytes) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...


async def notify_state(handler: StateHandler | None, connected: bool) -> None:
    """Tell the node about a connectivity edge; it may answer with a coroutine (the gap fill waits
    for nothing, but its start must not be lost), which is awaited here."""
    if handler is not None:
        result = handler(connected)
        if result is not None:
            await result


def create_broker(redis: Any | None, *, prefix: str = "vonix:", metrics: Any = None) -> Broker:
    """Pick the backend: Redis pub/sub when a Redis client bundle is given (sharded pub/sub on a
    Redis Cluster), else in-process."""
    if redis is None:
        from realtime.broker.memory import MemoryBroker

        return MemoryBroker()
    if getattr(redis, "cluster", False):
        from realtime.broker.cluster import ClusterBroker

        return ClusterBroker(redis.publisher, redis.subscriber, prefix=prefix, metrics=metrics)
    from realtime.broker.redis import RedisBroker

    return RedisBroker(redis.publisher, redis.subscriber, prefix=prefix, metrics=metrics)
