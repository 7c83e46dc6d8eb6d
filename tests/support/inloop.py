"""A uvicorn server that runs inside the test's event loop and leaves pytest's signal handlers alone."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:  # pytest keeps its own handlers
        yield
