"""An example program of `examples/` run as a real subprocess, its output collected line by line as it
comes (stdout and stderr apart), so a test can wait for what it prints, feed its stdin, signal it
(SIGSTOP/SIGCONT to freeze it) and stop it, killing it if it will not go."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ExampleProcess:
    def __init__(self, script: str, env: dict[str, str], *, stdin: bool = False) -> None:
        self.script = ROOT / "examples" / script
        self.env = env
        self.stdin = stdin
        self.out: list[str] = []
        self.err: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> ExampleProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-u", str(self.script), env=self.env, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE if self.stdin else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [asyncio.create_task(self._read(self.process.stdout, self.out)),
                         asyncio.create_task(self._read(self.process.stderr, self.err))]
        return self

    async def _read(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        async for raw in stream:
            into.append(raw.decode(errors="replace").rstrip())
            self._changed.set()

    async def feed(self, *lines: str) -> None:
        assert self.process is not None and self.process.stdin is not None, "started with stdin=True"
        self.process.stdin.write("".join(f"{line}\n" for line in lines).encode())
        await self.process.stdin.drain()

    async def wait_for(self, lines: list[str], pattern: str, count: int = 1, timeout: float = 15.0) -> list[str]:
        """The lines of `lines` (this process's `out` or `err`) matching the regular expression
        `pattern`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in lines if re.search(pattern, line)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.script.name} never printed {pattern!r} x{count}; stdout:\n"
                                     + "\n".join(self.out) + "\nstderr:\n" + "\n".join(self.err))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                pass

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        for reader in self._readers:
            await reader
