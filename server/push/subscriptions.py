"""The `push_subscriptions` table: one row per browser endpoint, owned by one user.

An endpoint is unique: subscribing again (same browser, maybe another account) moves the row to
the caller and refreshes its keys, so a shared device never notifies the previous account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.tables import push_subscriptions
from server.db.types import utcnow


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    user_id: int
    endpoint: str
    p256dh: str
    auth: str

    def info(self) -> dict[str, Any]:
        """The `subscription_info` pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _row(row: Any) -> Subscription:
    return Subscription(row["id"], row["user_id"], row["endpoint"], row["p256dh"], row["auth"])


async def upsert(db: Database, user_id: int, endpoint: str, p256dh: str, auth: str,
                 user_agent: str | None) -> tuple[Subscription, bool]:
    """Store or refresh a subscription; True when it is new."""
    values = {"user_id": user_id, "p256dh": p256dh, "auth": auth, "user_agent": user_agent, "failures": 0}
    for _ in range(2):
        updated = await db.fetch_one("push.refresh", push_subscriptions.update().where(
            push_subscriptions.c.endpoint == endpoint).values(**values).returning(*push_subscriptions.c))
        if updated is not None:
            return _row(updated), False
        try:
            inserted = await db.fetch_one("push.insert", push_subscriptions.insert().values(
                endpoint=endpoint, created_at=utcnow(), **values).returning(*push_subscriptions.c))
        except UniqueViolation:
            continue  # subscribed concurrently: update it on the next round
        return _row(inserted), True
    raise RuntimeError("push subscription upsert did not settle")


async def by_endpoint(db: Database, endpoint: str) -> Subscription | None:
    row = await db.fetch_one("push.by_endpoint", sa.select(push_subscriptions).where(
        push_subscriptions.c.endpoint == endpoint))
    return _row(row) if row else None


async def for_user(db: Database, user_id: int) -> list[Subscription]:
    rows = await db.fetch_all("push.for_user", sa.select(push_subscriptions).where(
        push_subscriptions.c.user_id == user_id).order_by(push_subscriptions.c.id))
    return [_row(r) for r in rows]


async def delete_for_user(db: Database, user_id: int, endpoint: str) -> bool:
    deleted = await db.fetch_all("push.delete", push_subscriptions.delete().where(
        push_subscriptions.c.user_id == user_id, push_subscriptions.c.endpoint == endpoint)
        .returning(push_subscriptions.c.id))
    return bool(deleted)


async def delete(db: Database, subscription_id: int) -> None:
    await db.execute("push.delete_gone", push_subscriptions.delete().where(
        push_subscriptions.c.id == subscription_id))


async def record(db: Database, subscription_id: int, *, ok: bool) -> None:
    if ok:
        values: dict[str, Any] = {"last_success_at": utcnow(), "failures": 0}
    else:
        values = {"failures": push_subscriptions.c.failures + 1}
    await db.execute("push.record", push_subscriptions.update().where(
        push_subscriptions.c.id == subscription_id).values(**values))
