"""Unique ids without a system call each: a random prefix per process and a counter.

`uuid4()` reads 16 bytes from the OS per id; a reconnect storm makes ids by the thousand per
second (a connection id, a log correlation id). A 48-bit random prefix drawn once per process keeps
ids from two replicas apart; the counter keeps them apart within one.
"""

from __future__ import annotations

import itertools
import os


class IdMaker:
    """`digits` hex digits of counter after the 12 of the prefix, zero-padded: fixed-length ids
    (a request id is 32 hex digits, like the uuid4 it replaces) until the counter outgrows them."""

    __slots__ = ("_counter", "_format", "prefix")

    def __init__(self, digits: int = 20) -> None:
        self.prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)
        self._format = f"{self.prefix}{{:0{digits}x}}"

    def __call__(self) -> str:
        return self._format.format(next(self._counter))
