"""Error tracking: unexpected errors are logged once, fingerprinted and counted per group.

A fingerprint is the error type plus where it was raised in our code (module:function), so the
same bug from a thousand requests is one group with a count, first/last seen and a sample, not a
thousand rows. Groups live in the database (`error_events`) so every replica adds to the same
counts; browser errors from the PWA arrive through `POST /api/errors` as source `client`.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from server.db.database import Database
from server.db.tables import error_events
from server.db.types import utcnow
from server.observability.logging import get_logger

log = get_logger("vonix.errors")
_PROJECT = str(Path(__file__).resolve().parents[2])


def location_of(exc: BaseException) -> str:
    """The innermost frame in our own code (server/ or realtime/), as `module:function:line`."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(_PROJECT) and "/.venv/" not in f.filename]
    candidates = ours or frames
    if not candidates:
        return "unknown"
    frame = candidates[-1]
    module = Path(frame.filename).resolve()
    try:
        module = module.relative_to(_PROJECT)
    except ValueError:
        pass
    return f"{str(module).removesuffix('.py').replace('/', '.')}:{frame.name}"


def fingerprint(error_type: str, location: str) -> str:
    return hashlib.sha256(f"{error_type}|{location}".encode()).hexdigest()[:32]


class ErrorTracker:
    def __init__(self, db: Database, metrics: Any) -> None:
        self.db = db
        self.recent: deque[float] = deque(maxlen=10_000)  # timestamps, for the alert rules
        self.unexpected = metrics.counter("vonix_unexpected_errors_total",
                                          "Unexpected (500) errors, by source.", ("source",))
        self.by_code = metrics.counter("vonix_errors_total", "Error responses by error code.", ("code",))

    def count_code(self, code: str) -> None:
        self.by_code.labels(code).inc()

    async def record(self, exc: BaseException, *, source: str = "server", context: dict[str, Any] | None = None) -> str:
        error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        location = location_of(exc)
        stack = "".join(traceback.format_exception(exc))[-8000:]
        return await self.record_group(source, error_type, location, str(exc)[:1000], stack, context or {})

    async def record_group(self, source: str, error_type: str, location: str | None, message: str,
                           stack: str | None, context: dict[str, Any]) -> str:
        print_ = fingerprint(error_type, location or "")
        self.recent.append(time.time())
        self.unexpected.labels(source).inc()
        now = utcnow()
        sample = {"message": message, "stack": stack, **{k: v for k, v in context.items() if v is not None}}
        values = {"fingerprint": print_, "source": source, "error_type": error_type[:128],
                  "location": (location or "")[:255], "message": message[:2000], "sample": sample,
                  "count": 1, "first_seen": now, "last_seen": now}
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = insert(error_events).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[error_events.c.fingerprint],
            set_={"count": error_events.c.count + 1, "last_seen": now, "sample": sample,
                  "message": values["message"]},
        )
        try:
            await self.db.execute("errors.record", statement)
        except Exception as db_exc:  # the database may be the thing that failed
            log.warning("error_not_stored", fingerprint=print_, error=db_exc.__class__.__name__)
        return print_

    def errors_within(self, seconds: float) -> int:
        horizon = time.time() - seconds
        return sum(1 for t in self.recent if t >= horizon)

    async def groups(self, limit: int = 50, source: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(error_events)
        if source:
            query = query.where(error_events.c.source == source)
        rows = await self.db.fetch_all("errors.list", query.order_by(error_events.c.last_seen.desc()).limit(limit))
        columns = ("fingerprint", "source", "error_type", "location", "message", "count", "first_seen",
                   "last_seen", "sample")
        return [{name: row[name] for name in columns} for row in rows]
