"""XP, levels and the leaderboard.

The truth is `xp_transactions`: one row per award, unique per (user, action, source id), so an
award repeats harmlessly (a like toggled ten times awards once) and `users.xp` / `users.level` are
running totals updated in the same transaction. Daily caps per action stop farming: past the cap
an award is still recorded (idempotency) with amount 0.

Levels follow a documented curve: reaching level L takes 25·L·(L-1) XP in total (level 2 at 50,
3 at 150, 5 at 500, 10 at 2,250, 20 at 9,500); each band of levels has a title and a colour. A
level-up is a live event on the member's own channel.

The leaderboard (all-time and this ISO week) is a pair of Redis sorted sets in scaled mode,
rebuilt from the table whenever Redis has lost them; in embedded mode the database answers.
Each Redis command names one set (the update pipeline is no transaction, the rebuild's transaction
holds one key), so the same calls work on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import users, xp_transactions
from server.db.types import utcnow
from server.observability.logging import get_logger

log = get_logger("vonix.xp")

# XP per action, as the real Vonix Network site awards it.
AWARDS: dict[str, int] = {
    "social_post": 15, "post_liked": 2, "comment": 5, "comment_liked": 1, "forum_thread": 20, "forum_reply": 10,
    "upvote_received": 3, "downvote_received": -2, "friend_accepted": 10, "profile_completed": 25,
    "daily_login": 5, "streak_bonus": 0,  # the bonus is 2 per streak day, at most 50 (daily_login)
    "first_post": 50, "first_comment": 25, "first_friend": 30, "moderator_removal": -50,
}
# The most XP one action may earn a member in a UTC day (losses are never capped).
DAILY_CAPS: dict[str, int] = {
    "social_post": 150, "post_liked": 100, "comment": 100, "comment_liked": 50, "forum_thread": 200,
    "forum_reply": 200, "upvote_received": 150, "friend_accepted": 100,
}
BANDS: tuple[tuple[int, str, str], ...] = (  # (first level, title, colour)
    (1, "Newcomer", "#9ca3af"), (5, "Regular", "#10b981"), (10, "Veteran", "#0ea5e9"),
    (20, "Elite", "#8b5cf6"), (35, "Champion", "#f59e0b"), (50, "Legend", "#ef4444"),
)
LEADERBOARD_SIZE = 100
STREAK_BONUS_PER_DAY, STREAK_BONUS_MAX = 2, 50  # the daily login's streak bonus
STREAK_DAYS_MAX = STREAK_BONUS_MAX // STREAK_BONUS_PER_DAY + 1  # days back worth looking at

Publish = Callable[[int, dict[str, Any]], Awaitable[None]]


def level_for(xp: int) -> int:
    """The highest L with 25·L·(L-1) <= xp (level 1 at 0 XP or less)."""
    if xp <= 0:
        return 1
    level = int((1 + math.sqrt(1 + 4 * xp / 25)) / 2)
    while 25 * (level + 1) * level <= xp:  # floating point at band edges
        level += 1
    while 25 * level * (level - 1) > xp:
        level -= 1
    return max(1, level)


def xp_for(level: int) -> int:
    return 25 * level * (level - 1)


def band(level: int) -> dict[str, Any]:
    title, colour = next((t, c) for first, t, c in reversed(BANDS) if level >= first)
    return {"level": level, "title": title, "colour": colour}


def progress(xp: int) -> dict[str, Any]:
    """What a profile shows: level, title, colour and how far to the next level."""
    level = level_for(xp)
    return {**band(level), "xp": xp, "level_xp": xp_for(level), "next_level_xp": xp_for(level + 1)}


def week_start(now: datetime) -> datetime:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


class Xp:
    def __init__(self, db: Database, redis: Any = None) -> None:
        self.db = db
        self.redis = redis  # redis.asyncio client (scaled mode) or None
        self.publish: Publish | None = None  # set by Resources.build: events on user:<id>
        self.notify: Any = None  # set by Resources.build: Notifications.notify_about (level-ups)
        # One award transaction at a time per process: a read-then-write transaction that another
        # one overtakes fails at once on SQLite ("database is locked"); awards are rare, so the
        # queue is short on PostgreSQL too.
        self._writing = asyncio.Lock()

    async def award(self, user_id: int, action: str, source_id: str, amount: int | None = None, *,
                    announce: bool = True) -> int | None:
        """Award `action` for `source_id` once; the amount granted (0 past the daily cap), or None
        when this exact award was already made. `announce`: an `xp` event (a level-up always is)."""
        try:
            async with self._writing:
                return await self._award(user_id, action, source_id[:64], amount, announce)
        except UniqueViolation:  # the same award, made at the same moment on another replica
            return None

    async def _award(self, user_id: int, action: str, source_id: str, fixed: int | None,
                     announce: bool) -> int | None:
        base = AWARDS[action] if fixed is None else fixed
        now = utcnow()
        async with self.db.transaction():
            # The insert comes first: it takes SQLite's write lock at once (a transaction that read
            # first and then writes fails when another writer got in between) and it is the
            # idempotency check (UniqueViolation: made already, everything rolls back).
            award_id = await self.db.fetch_val("xp.insert", xp_transactions.insert().values(
                user_id=user_id, action=action, source_id=source_id, amount=base, created_at=now)
                .returning(xp_transactions.c.id))
            amount = base
            if base > 0 and action in DAILY_CAPS:
                day = now.replace(hour=0, minute=0, second=0, microsecond=0)
                earned = await self.db.fetch_val("xp.today", sa.select(sa.func.coalesce(
                    sa.func.sum(xp_transactions.c.amount), 0)).where(
                    xp_transactions.c.user_id == user_id, xp_transactions.c.action == action,
                    xp_transactions.c.created_at >= day, xp_transactions.c.id != award_id))
                amount = max(0, min(base, DAILY_CAPS[action] - int(earned or 0)))
                if amount != base:
                    await self.db.execute("xp.capped", xp_transactions.update().where(
                        xp_transactions.c.id == award_id).values(amount=amount))
            row = await self.db.fetch_one("xp.user", sa.select(users.c.xp, users.c.level).where(users.c.id == user_id))
            if row is None:
                return None
            total = int(row["xp"]) + amount
            level = level_for(total)
            await self.db.execute("xp.total", users.update().where(users.c.id == user_id).values(xp=total, level=level))
        if amount:
            await self._leaderboard_add(user_id, amount, now)
        if self.publish is not None:
            if announce:
                await self.publish(user_id, {"type": "xp", "action": action, "gained": amount, "xp": total,
                                             **band(level)})
            if level > int(row["level"]):
                await self.publish(user_id, {"type": "level_up", **band(level)})
                if self.notify is not None:  # kept in the notification list (and pushed when away)
                    info = band(level)
                    await self.notify([user_id], "level_up", title=f"You reached level {level}",
                                      body=f"{info['title']} — keep it up!", url="/leaderboard")
        return amount

    async def daily_login(self, user_id: int, now: datetime | None = None) -> int:
        """+5 for the first visit of a UTC day, plus 2 per day of the streak so far (at most +50)."""
        today = (now or utcnow()).astimezone(UTC).date()
        days = await self.db.fetch_all("xp.logins", sa.select(xp_transactions.c.source_id).where(
            xp_transactions.c.user_id == user_id, xp_transactions.c.action == "daily_login",
            xp_transactions.c.source_id >= (today - timedelta(days=STREAK_DAYS_MAX)).isoformat()))
        seen = {r["source_id"] for r in days}
        # silent: it happens as the app opens (a level-up it causes is still announced)
        gained = await self.award(user_id, "daily_login", today.isoformat(), announce=False)
        if gained is None:
            return 0
        streak = 0
        while (today - timedelta(days=streak + 1)).isoformat() in seen:
            streak += 1
        bonus = min(STREAK_BONUS_MAX, STREAK_BONUS_PER_DAY * streak)
        if bonus:
            gained += await self.award(user_id, "streak_bonus", today.isoformat(), bonus, announce=False) or 0
        return gained

    # --- leaderboard ---------------------------------------------------------------------------
    def _keys(self, now: datetime) -> tuple[str, str]:
        year, week, _ = now.isocalendar()
        return "vonix:lb:all", f"vonix:lb:week:{year}-{week:02d}"

    async def _leaderboard_add(self, user_id: int, amount: int, now: datetime) -> None:
        if self.redis is None:
            return
        all_time, weekly = self._keys(now)
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zincrby(all_time, amount, str(user_id))
            pipe.zincrby(weekly, amount, str(user_id))
            pipe.expire(weekly, 15 * 86400)
            await pipe.execute()
        except Exception as exc:  # the table stays the truth; a rebuild fills Redis again
            log.warning("leaderboard_update_failed", error=exc.__class__.__name__)

    async def leaderboard(self, period: str, limit: int = LEADERBOARD_SIZE) -> list[tuple[int, int]]:
        """[(user id, xp)], best first: all-time or this week."""
        now = utcnow()
        if self.redis is not None:
            key = self._keys(now)[0 if period == "all" else 1]
            try:
                if not await self.redis.exists(key):
                    await self._rebuild(key, period, now)
                entries = await self.redis.zrevrange(key, 0, limit - 1, withscores=True)
                return [(int(member), int(score)) for member, score in entries]
            except Exception as exc:
                log.warning("leaderboard_read_failed", error=exc.__class__.__name__)
        return await self._from_table(period, now, limit)

    async def _from_table(self, period: str, now: datetime, limit: int | None) -> list[tuple[int, int]]:
        if period == "all":
            query = sa.select(users.c.id, users.c.xp).where(users.c.xp > 0, users.c.status == "active").order_by(
                users.c.xp.desc(), users.c.id)
        else:
            total = sa.func.sum(xp_transactions.c.amount)
            query = (sa.select(xp_transactions.c.user_id.label("id"), total.label("xp"))
                     .where(xp_transactions.c.created_at >= week_start(now))
                     .group_by(xp_transactions.c.user_id).having(total > 0)
                     .order_by(total.desc(), xp_transactions.c.user_id))
        if limit is not None:
            query = query.limit(limit)
        rows = await self.db.fetch_all(f"leaderboard.{period}", query)
        return [(int(r["id"]), int(r["xp"])) for r in rows]

    async def _rebuild(self, key: str, period: str, now: datetime) -> None:
        """Redis lost the set (restart, eviction, a new week): refill it from the table."""
        rows = await self._from_table(period, now, None)
        if not rows:
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        pipe.zadd(key, {str(user_id): xp for user_id, xp in rows})
        if period != "all":
            pipe.expire(key, 15 * 86400)
        await pipe.execute()
        log.info("leaderboard_rebuilt", key=key, members=len(rows))
