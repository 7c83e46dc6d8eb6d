"""Account and IP lockout after repeated failed logins.

Failures count per account (per name tried, for names that match no account, so unknown and known
accounts answer alike) and per IP, inside a sliding window. Crossing a threshold writes a lockout
row until a fixed time; while it holds, even the right password is refused. Stored in the
database so every replica agrees, in both embedded and scaled mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import lockouts, login_attempts
from server.db.types import utcnow


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    window: int = 900
    duration: int = 900
    ip_limit: int = 20


@dataclass(frozen=True)
class Lock:
    until: datetime
    scope: str  # account | ip

    @property
    def retry_after(self) -> int:
        return max(1, int((self.until - utcnow()).total_seconds()) + 1)


class Lockout:
    def __init__(self, db: Database, policy: LockoutPolicy) -> None:
        self.db = db
        self.policy = policy

    async def active(self, user_id: int | None, login: str, ip: str | None) -> Lock | None:
        now = utcnow()
        subject = (lockouts.c.user_id == user_id) if user_id is not None else (lockouts.c.login == login)
        conditions = [subject]
        if ip:
            conditions.append(sa.and_(lockouts.c.ip == ip, lockouts.c.user_id.is_(None),
                                      lockouts.c.login.is_(None)))
        row = await self.db.fetch_one("lockout.active", sa.select(lockouts.c.locked_until, lockouts.c.ip)
                                      .where(sa.or_(*conditions), lockouts.c.locked_until > now)
                                      .order_by(lockouts.c.locked_until.desc()).limit(1))
        if row is None:
            return None
        return Lock(row["locked_until"], "ip" if row["ip"] else "account")

    async def record(self, user_id: int | None, login: str, ip: str | None, success: bool) -> Lock | None:
        """Store the attempt; on failure, lock the account or IP when a threshold is crossed."""
        now = utcnow()
        await self.db.execute("lockout.attempt", login_attempts.insert().values(
            user_id=user_id, login=login[:254], ip=ip, success=success, created_at=now))
        if success:
            return None
        since = now - timedelta(seconds=self.policy.window)
        subject = (login_attempts.c.user_id == user_id) if user_id is not None else sa.and_(
            login_attempts.c.user_id.is_(None), login_attempts.c.login == login)
        failures = await self.db.fetch_val("lockout.failures_for_account", sa.select(sa.func.count())
                                           .where(subject, login_attempts.c.success.is_(False),
                                                  login_attempts.c.created_at > since))
        until = now + timedelta(seconds=self.policy.duration)
        lock: Lock | None = None
        if failures >= self.policy.threshold:
            await self.db.execute("lockout.insert", lockouts.insert().values(
                user_id=user_id, login=None if user_id is not None else login, locked_until=until,
                reason="failed_logins", created_at=now))
            lock = Lock(until, "account")
        if ip:
            ip_failures = await self.db.fetch_val("lockout.failures_for_ip", sa.select(sa.func.count())
                                                  .where(login_attempts.c.ip == ip,
                                                         login_attempts.c.success.is_(False),
                                                         login_attempts.c.created_at > since))
            if ip_failures >= self.policy.ip_limit:
                await self.db.execute("lockout.insert_ip", lockouts.insert().values(
                    ip=ip, locked_until=until, reason="failed_logins_ip", created_at=now))
                lock = lock or Lock(until, "ip")
        return lock

    async def clear(self, user_id: int) -> None:
        """After a password reset the owner proved control: lift the account's lock."""
        await self.db.execute("lockout.clear", lockouts.update().where(
            lockouts.c.user_id == user_id, lockouts.c.locked_until > utcnow()).values(locked_until=utcnow()))
