"""Linked OAuth accounts: by (provider, provider user id) (unique) and per user (user_id index)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import oauth_accounts
from server.db.types import utcnow


async def by_provider_id(db: Database, provider: str, provider_user_id: str) -> Any:
    return await db.fetch_one("oauth.by_provider_id", sa.select(oauth_accounts).where(
        oauth_accounts.c.provider == provider, oauth_accounts.c.provider_user_id == provider_user_id))


async def for_user(db: Database, user_id: int) -> list[Any]:
    return await db.fetch_all("oauth.for_user", sa.select(oauth_accounts).where(
        oauth_accounts.c.user_id == user_id).order_by(oauth_accounts.c.id))


async def insert(db: Database, user_id: int, provider: str, provider_user_id: str, email: str | None) -> None:
    await db.execute("oauth.insert", oauth_accounts.insert().values(
        user_id=user_id, provider=provider, provider_user_id=provider_user_id, email=email,
        created_at=utcnow()))


async def delete(db: Database, user_id: int, provider: str) -> int:
    rows = await db.fetch_all("oauth.delete", oauth_accounts.delete().where(
        oauth_accounts.c.user_id == user_id, oauth_accounts.c.provider == provider,
    ).returning(oauth_accounts.c.id))
    return len(rows)
