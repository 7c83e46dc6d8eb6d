"""A small protocol-v1 test client on the `websockets` library: replies by id, pushes in a queue."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection


class WsClient:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.unmatched: list[dict[str, Any]] = []
        self.frames_received = 0
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, base_url: str, token: str | None = None, origin: str | None = None,
                      **kwargs: Any) -> WsClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = base_url.replace("http://", "ws://") + "/ws"
        connection = await websockets.connect(url, additional_headers=headers, origin=origin,  # type: ignore[arg-type]
                                              max_size=2**22, **kwargs)
        return cls(connection)

    async def _read(self) -> None:
        try:
            async for frame in self.connection:
                self.frames_received += 1
                for line in (frame if isinstance(frame, str) else frame.decode()).split("\n"):
                    message = orjson.loads(line)
                    request_id = message.get("id")
                    future = self.replies.pop(request_id, None) if request_id is not None else None
                    if future is not None and not future.done():
                        future.set_result(message)
                    elif "op" in message and "ok" not in message:
                        self.pushes.put_nowait(message)
                    else:
                        self.unmatched.append(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            code = self.connection.close_code
            if not self.closed.done():
                self.closed.set_result(code)
            for future in self.replies.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"closed with {code}"))

    async def request(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self.replies[request_id] = future
        await self.connection.send(orjson.dumps({"id": request_id, "op": op, **fields}).decode())
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.replies.pop(request_id, None)  # a reply after the timeout is unmatched, not fatal

    async def send_raw(self, data: str | bytes) -> None:
        await self.connection.send(data)

    async def push(self, op: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.pushes.get(), timeout)
            if op is None or message.get("op") == op:
                return message

    async def push_about(self, op: str, username: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next `op` push about `username`, skipping others: `typing`, or `join`/`leave`,
        which arrive inside `presence_diff` pushes (the diff is returned)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = max(0.01, deadline - asyncio.get_running_loop().time())
            if op in ("join", "leave"):
                message = await self.push("presence_diff", left)
                if any(u["username"] == username for u in message[f"{op}s"]):
                    return message
            else:
                message = await self.push(op, left)
                if message.get("user", {}).get("username") == username:
                    return message

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [await self.push("message", timeout) for _ in range(count)]

    async def close_code(self, timeout: float = 5.0) -> int | None:
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.close()
        with contextlib.suppress(Exception):
            await self._reader
