"""The audit log of security events (logins, lockouts, revocations, role and bot changes)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import audit_log
from server.db.types import utcnow
from server.observability.logging import get_logger

log = get_logger("vonix.audit")


async def record(
    db: Database,
    action: str,
    *,
    actor_id: int | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    ip: str | None = None,
    **data: Any,
) -> None:
    await db.execute("audit.insert", audit_log.insert().values(
        actor_id=actor_id, action=action, target_type=target_type,
        target_id=None if target_id is None else str(target_id), ip=ip, data=data or None,
        created_at=utcnow(),
    ))
    log.info("audit", action=action, actor_id=actor_id, target_type=target_type, target_id=target_id)


async def page(db: Database, before_id: int | None, limit: int, action: str | None = None) -> list[Any]:
    query = sa.select(audit_log)
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    if action:
        query = query.where(audit_log.c.action == action)
    return await db.fetch_all("audit.page", query.order_by(audit_log.c.id.desc()).limit(limit))
