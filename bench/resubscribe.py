"""What resubscribing a member's rooms costs the server: ten single subscribes or one batch.

One websocket client subscribes to `rooms` rooms and unsubscribes again, `rounds` times, first
with one `subscribe` per room, then with one batch `subscribe` of all of them; the server's CPU
(user + sys from /proc) is read around each variant. The ten `unsubscribe`s of a round are the
same in both variants, so the difference is the subscribes'. The client is a plain Python
`websockets` client: it is slow, but its CPU is not the server's.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import websockets

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


@dataclass
class ResubscribeCost:
    rooms: int
    rounds: int
    single_ms: float  # server CPU per round, one subscribe per room (+ the unsubscribes)
    batch_ms: float  # the same with one batch subscribe

    @property
    def ratio(self) -> float:
        return self.batch_ms / self.single_ms if self.single_ms else 0.0


class _Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self.ids)
        await self.ws.send(orjson.dumps({"id": request_id, "op": op, **fields}).decode())
        while True:
            for line in (await self.ws.recv()).split("\n"):
                frame = orjson.loads(line)
                if frame.get("id") == request_id:
                    if not frame.get("ok"):
                        raise RuntimeError(f"{op} refused: {frame}")
                    return frame  # type: ignore[no-any-return]


async def _measure(url: str, token: str, channels: list[str], rounds: int, pids: list[int]) -> ResubscribeCost:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        client = _Client(ws)

        async def single() -> None:
            for channel in channels:
                await client.call("subscribe", channel=channel, presence=False)

        async def batch() -> None:
            reply = await client.call("subscribe", channels=channels, presence=False)
            if not all(result["ok"] for result in reply["results"]):
                raise RuntimeError(f"batch subscribe refused: {reply}")

        async def rounds_of(subscribe: Any) -> float:
            await asyncio.sleep(0.3)  # let the previous variant's work settle
            before = _cpu_seconds(pids)
            for _ in range(rounds):
                await subscribe()
                for channel in channels:
                    await client.call("unsubscribe", channel=channel)
            return 1000 * (_cpu_seconds(pids) - before) / rounds

        await rounds_of(single)  # warm up (caches, broker subscriptions come and go the same way)
        single_ms = await rounds_of(single)
        batch_ms = await rounds_of(batch)
    return ResubscribeCost(len(channels), rounds, single_ms, batch_ms)


def measure(url: str, token: str, channels: list[str], pids: list[int], rounds: int = 200) -> ResubscribeCost:
    return asyncio.run(_measure(url, token, channels, rounds, pids))
