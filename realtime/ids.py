"""Unique ids without a system call each: a random prefix per process and a counter.

`uuid4()` reads 16 bytes from the OS per id; a reconnect storm makes ids by the thousand per
second (a connection id, a log correlation id). A 48-bit random prefix drawn once per process keeps
ids from two replicas apart; the counter keeps them apart within one.
"""

from __future__ import annotations

import itertools
import os


class IdMaker:
    __slots__ = ("_counter", "prefix")

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self._counter):x}"
