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
    """The account that owns this address (`users.email`); a pending address never matches."""
    return await db.fetch_one(
        "users.by_email", sa.select(users).where(sa.func.lower(users.c.email) == email.strip().lower())
    )


def email_unconfirmed(row: Any) -> bool:
    """The account has an address (pending, or from before migration 0017) it has not confirmed:
    what REQUIRE_VERIFIED_EMAIL refuses sign-in for, whichever way the member signs in."""
    return row["email_verified_at"] is None and bool(row["email"] or row["pending_email"])


class EmailOwnedElsewhere(Exception):
    """Confirming a pending address that another account already owns."""


async def confirm_email(db: Database, user_id: int) -> bool:
    """The mailed link was opened: the pending address becomes the account's own (or, for a row
    from before migration 0017 with no pending address, its unconfirmed one is marked confirmed).
    False when there is nothing to confirm; EmailOwnedElsewhere when another account owns it (the
    unique index decides, so two accounts racing for one address cannot both win)."""
    from server.db.errors import UniqueViolation

    now = utcnow()
    try:
        moved = await db.fetch_one("users.confirm_pending_email", users.update().where(
            users.c.id == user_id, users.c.pending_email.is_not(None),
        ).values(email=users.c.pending_email, pending_email=None, email_verified_at=now, updated_at=now)
            .returning(users.c.id))
    except UniqueViolation:
        raise EmailOwnedElsewhere() from None
    if moved is not None:
        return True
    legacy = await db.fetch_one("users.confirm_legacy_email", users.update().where(
        users.c.id == user_id, users.c.email.is_not(None),
    ).values(email_verified_at=sa.func.coalesce(users.c.email_verified_at, now), updated_at=now)
        .returning(users.c.id))
    return legacy is not None


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
    """The member's own view: a pending address shows as `email` with `email_verified: false`, so
    the PWA shows what they typed; whether that address belongs to another account never shows."""
    data = public(row)
    pending = row["pending_email"]
    data.update(email=pending or row["email"],
                email_verified=pending is None and row["email"] is not None and row["email_verified_at"] is not None,
                mfa_enabled=row["totp_enabled_at"] is not None)
    return data
