"""What the hub needs from a websocket: send text, close with a code. Starlette adapts to this."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    async def send(self, data: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...
