"""In-process broker for embedded mode: delivery is a direct call, in publish order."""

from __future__ import annotations

from realtime.broker.base import MessageHandler, StateHandler


def _drop(channel: str, message: bytes) -> None:
    return None


class MemoryBroker:
    def __init__(self) -> None:
        self.on_message: MessageHandler = _drop
        self.on_state: StateHandler | None = None
        self._channels: set[str] = set()

    @property
    def connected(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.clear()

    async def publish(self, channel: str, message: bytes) -> None:
        if channel in self._channels:
            self.on_message(channel, message)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
