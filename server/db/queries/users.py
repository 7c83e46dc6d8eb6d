"""User lookups; case-insensitive matches use the lower() expression indexes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.db.database import Database
from server.db.tables import users
from server.db.types import utcnow

PUBLIC_FIELDS = ("id", "username", "display_name", "avatar_url", "bio", "role", "status",
                 "minecraft_username", "minecraft_uuid", "xp", "level", "last_seen_at", "created_at")


def by_login_query(login: str) -> sa.Select[Any]:
    lowered = login.strip().lower()
    column = users.c.email if "@" in lowered else users.c.username
    return sa.select(users).where(sa.func.lower(column) == lowered)


async def by_login(db: Database, login: str) -> Any:
    return await db.fetch_one("users.by_login", by_login_query(login))


async def by_id(db: Database, user_id: int) -> Any:
    return await db.fetch_one("users.by_id", sa.select(users).where(users.c.id == user_id))


async def by_username(db: Database, username: str) -> Any:
    return await db.fetch_one(
        "users.by_username", sa.select(users).where(sa.func.lower(users.c.username) == username.lower())
    )


async def by_email(db: Database, email: str) -> Any:
    return await db.fetch_one(
        "users.by_email", sa.select(users).where(sa.func.lower(users.c.email) == email.strip().lower())
    )


async def insert(db: Database, **values: Any) -> int:
    now = utcnow()
    query = users.insert().values(created_at=now, updated_at=now, **values).returning(users.c.id)
    return int(await db.fetch_val("users.insert", query))


async def update(db: Database, user_id: int, **values: Any) -> None:
    await db.execute("users.update", users.update().where(users.c.id == user_id).values(
        updated_at=utcnow(), **values))


def public(row: Any) -> dict[str, Any]:
    return {name: row[name] for name in PUBLIC_FIELDS}


def private(row: Any) -> dict[str, Any]:
    data = public(row)
    data.update(email=row["email"], email_verified=row["email_verified_at"] is not None,
                mfa_enabled=row["totp_enabled_at"] is not None)
    return data
