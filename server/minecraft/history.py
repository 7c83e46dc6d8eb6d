"""Status history: uptime and players over time, and the maintenance that folds and prunes it.

A poll is one `mc_status_samples` row until it is older than `FOLD_AFTER` (48 hours); then the
maintenance task `mc_status_history` folds whole hours of them into `mc_status_hourly` (polls,
online polls, players summed, peak, capacity) and deletes them, in one transaction per batch, so
each poll is counted in exactly one table and a run stopped half way loses nothing. Both tables
are pruned past `MC_STATUS_RETENTION_DAYS`.

Reads: the 24-hour chart has 5-minute buckets (from the per-poll rows, always younger than 48 h),
the 7-day chart hourly ones (per-poll rows grouped by hour plus the folded hours). Buckets are
made in Python from a few thousand rows at most per server, the same on SQLite and PostgreSQL;
answers are cached in process for `CACHE_SECONDS`, so a busy home page costs one query a minute.
`players` in a bucket is the mean over its polls (an offline poll counts 0); `online` the share of
polls that found the server up; uptime the same share over the whole range, in percent.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables_minecraft import mc_status_hourly, mc_status_samples
from server.db.types import UtcDateTime

FOLD_AFTER = timedelta(hours=48)
CACHE_SECONDS = 60.0
RANGES = {"24h": (timedelta(hours=24), 300), "7d": (timedelta(days=7), 3600)}


@dataclass
class Bucket:
    polls: int = 0
    online: int = 0
    players: int = 0
    peak: int = 0
    max: int = 0

    def add(self, polls: int, online: int, players: int, peak: int, capacity: int) -> None:
        self.polls += polls
        self.online += online
        self.players += players
        self.peak = max(self.peak, peak)
        self.max = max(self.max, capacity)


def _floor(at: datetime, seconds: int) -> datetime:
    return datetime.fromtimestamp(int(at.timestamp()) // seconds * seconds, UTC)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def percent(online: int, polls: int) -> float | None:
    return round(100.0 * online / polls, 1) if polls else None


def _online_count() -> Any:
    return sa.func.sum(sa.cast(mc_status_samples.c.online, sa.Integer()))


class History:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._cache: dict[Any, tuple[float, Any]] = {}

    def forget(self) -> None:
        self._cache.clear()

    def _cached(self, key: Any) -> Any:
        hit = self._cache.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def _keep(self, key: Any, value: Any) -> Any:
        if len(self._cache) > 1000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + CACHE_SECONDS, value)
        return value

    async def uptimes(self) -> dict[int, dict[str, float | None]]:
        """Every server's uptime over 24 h and 7 d (percent of polls online; None: no polls)."""
        cached = self._cached("uptimes")
        if cached is not None:
            return dict(cached)
        now = self.clock()
        counts: dict[str, dict[int, list[int]]] = {"24h": defaultdict(lambda: [0, 0]),
                                                   "7d": defaultdict(lambda: [0, 0])}
        for name, (span, _) in RANGES.items():
            since = sa.bindparam("since", now - span, type_=UtcDateTime())
            rows = await self.db.fetch_all(f"mc_status.uptime_{name}", sa.select(
                mc_status_samples.c.server_id, sa.func.count().label("polls"), _online_count().label("up"),
            ).where(mc_status_samples.c.at >= since).group_by(mc_status_samples.c.server_id))
            for row in rows:
                counts[name][int(row["server_id"])][0] += int(row["polls"])
                counts[name][int(row["server_id"])][1] += int(row["up"] or 0)
        folded = await self.db.fetch_all("mc_status.uptime_folded", sa.select(
            mc_status_hourly.c.server_id, sa.func.sum(mc_status_hourly.c.polls).label("polls"),
            sa.func.sum(mc_status_hourly.c.online_polls).label("up"),
        ).where(mc_status_hourly.c.hour >= sa.bindparam("since", now - RANGES["7d"][0], type_=UtcDateTime()))
            .group_by(mc_status_hourly.c.server_id))
        for row in folded:
            counts["7d"][int(row["server_id"])][0] += int(row["polls"] or 0)
            counts["7d"][int(row["server_id"])][1] += int(row["up"] or 0)
        ids = set(counts["24h"]) | set(counts["7d"])
        result = {server_id: {name: percent(counts[name][server_id][1], counts[name][server_id][0])
                              if server_id in counts[name] else None for name in RANGES} for server_id in ids}
        return dict(self._keep("uptimes", result))

    async def chart(self, server_id: int, range_: str) -> dict[str, Any]:
        """`{"range", "uptime", "points": [{"at", "online", "players", "max"}]}`; buckets without
        polls are left out (a gap in the chart)."""
        cached = self._cached(("chart", server_id, range_))
        if cached is not None:
            return dict(cached)
        span, step = RANGES[range_]
        now = self.clock()
        since = now - span
        buckets: dict[datetime, Bucket] = defaultdict(Bucket)
        rows = await self.db.fetch_all("mc_status.history_polls", sa.select(
            mc_status_samples.c.at, mc_status_samples.c.online, mc_status_samples.c.players,
            mc_status_samples.c.max,
        ).where(mc_status_samples.c.server_id == server_id,
                mc_status_samples.c.at >= sa.bindparam("since", since, type_=UtcDateTime())))
        for row in rows:
            up = bool(row["online"])
            players = int(row["players"]) if up else 0
            buckets[_floor(row["at"], step)].add(1, int(up), players, players, int(row["max"]))
        if step == 3600:
            hours = await self.db.fetch_all("mc_status.history_hours", sa.select(mc_status_hourly).where(
                mc_status_hourly.c.server_id == server_id,
                mc_status_hourly.c.hour >= sa.bindparam("since", _floor(since, 3600), type_=UtcDateTime())))
            for row in hours:
                buckets[_floor(row["hour"], 3600)].add(int(row["polls"]), int(row["online_polls"]),
                                                       int(row["players_sum"]), int(row["players_peak"]),
                                                       int(row["max"]))
        points = [{"at": iso(at), "online": round(b.online / b.polls, 3), "players": round(b.players / b.polls, 2),
                   "max": b.max} for at, b in sorted(buckets.items()) if b.polls]
        polls = sum(b.polls for b in buckets.values())
        online = sum(b.online for b in buckets.values())
        return dict(self._keep(("chart", server_id, range_),
                               {"range": range_, "uptime": percent(online, polls), "points": points}))


# --- maintenance (server/ops/maintenance.py: the `mc_status_history` task) ---------------------

async def fold_and_prune(db: Database, now: datetime, retention_days: int, batch_size: int) -> dict[str, int]:
    """Fold per-poll rows of whole hours older than FOLD_AFTER into hourly rows (merged with a
    row already there), then prune both tables past the retention. Counts by table."""
    cutoff = _floor(now - FOLD_AFTER, 3600)
    keep_from = now - timedelta(days=retention_days)
    counts = {"mc_status_samples": 0, "mc_status_hourly": 0, "mc_status_pruned": 0}
    while True:
        async with db.transaction():
            rows = await db.fetch_all("maintenance.mc_fold_pick", sa.select(mc_status_samples).where(
                mc_status_samples.c.at < sa.bindparam("cutoff", cutoff, type_=UtcDateTime())
            ).order_by(mc_status_samples.c.id).limit(batch_size))
            if not rows:
                break
            hours: dict[tuple[int, datetime], Bucket] = defaultdict(Bucket)
            for row in rows:
                up = bool(row["online"])
                players = int(row["players"]) if up else 0
                hours[(int(row["server_id"]), _floor(row["at"], 3600))].add(1, int(up), players, players,
                                                                            int(row["max"]))
            counts["mc_status_hourly"] += await _merge_hours(db, hours, keep_from)
            await db.execute("maintenance.mc_fold_delete", sa.delete(mc_status_samples).where(
                mc_status_samples.c.id.in_([row["id"] for row in rows])))
            counts["mc_status_samples"] += len(rows)
        if len(rows) < batch_size:
            break
    pruned = await db.fetch_all("maintenance.mc_prune_hours", sa.delete(mc_status_hourly).where(
        mc_status_hourly.c.hour < sa.bindparam("keep_from", keep_from, type_=UtcDateTime())
    ).returning(mc_status_hourly.c.server_id))
    counts["mc_status_pruned"] = len(pruned)
    return counts


async def _merge_hours(db: Database, hours: dict[tuple[int, datetime], Bucket], keep_from: datetime) -> int:
    """Insert or add to the hourly rows (inside the caller's transaction); hours already past the
    retention are dropped. The number of rows written."""
    written = 0
    for (server_id, hour), bucket in hours.items():
        if hour + timedelta(hours=1) <= keep_from:
            continue
        key = (mc_status_hourly.c.server_id == server_id) & (
            mc_status_hourly.c.hour == sa.bindparam("hour", hour, type_=UtcDateTime()))
        existing = await db.fetch_one("maintenance.mc_fold_existing", sa.select(mc_status_hourly).where(key))
        if existing is None:
            await db.execute("maintenance.mc_fold_insert", mc_status_hourly.insert().values(
                server_id=server_id, hour=hour, polls=bucket.polls, online_polls=bucket.online,
                players_sum=bucket.players, players_peak=bucket.peak, max=bucket.max))
        else:
            await db.execute("maintenance.mc_fold_update", mc_status_hourly.update().where(key).values(
                polls=existing["polls"] + bucket.polls, online_polls=existing["online_polls"] + bucket.online,
                players_sum=existing["players_sum"] + bucket.players,
                players_peak=max(int(existing["players_peak"]), bucket.peak),
                max=max(int(existing["max"]), bucket.max)))
        written += 1
    return written
