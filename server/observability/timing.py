"""A timing helper: `with timings.time("realtime.persist"):` or `@timings.timed("x")` logs the
duration at debug level and records it in `vonix_operation_duration_seconds{operation}`.

Operation names are chosen in code (bounded labels); use it around work worth watching that has no
metric of its own (the database and HTTP layers already time themselves).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from server.observability.logging import get_logger

log = get_logger("vonix.timing")
P = ParamSpec("P")
R = TypeVar("R")


class Timings:
    def __init__(self, metrics: Any) -> None:
        self.histogram = metrics.histogram("vonix_operation_duration_seconds",
                                           "Duration of named operations.", ("operation",))

    @contextmanager
    def time(self, operation: str, **fields: Any) -> Iterator[None]:
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except BaseException:
            outcome = "error"
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.histogram.labels(operation).observe(elapsed)
            log.debug("timed", operation=operation, duration_ms=round(elapsed * 1000, 2), outcome=outcome, **fields)

    def timed(self, operation: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            @functools.wraps(function)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.time(operation):
                    return await function(*args, **kwargs)

            return wrapper

        return decorate
