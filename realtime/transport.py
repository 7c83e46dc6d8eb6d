"""What the hub needs from a websocket: send a text frame (given as UTF-8 bytes), close with a code.

`write` is the fan-out fast path: the frame goes to the socket in the same call, no coroutine and
no per-send ASGI message, when the socket can take it now. When it cannot (writes paused by
backpressure, the connection closing) it returns False and the connection awaits `send`, which
waits its turn. `server/ws.py` adapts an ASGI websocket to this.
"""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    def write(self, data: bytes) -> bool: ...

    # A coroutine, not just an awaitable: `Connection._flush` starts it with `.send(None)`.
    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...
