"""Single-use mailed tokens: password reset (30 minutes) and email verification (24 hours).

The token is 32 random bytes, mailed as a link and stored only as its SHA-256. Using it marks it
used in the same statement that finds it, so two concurrent uses cannot both succeed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from server.auth.tokens import hash_secret, new_secret
from server.db.database import Database
from server.db.tables import user_tokens
from server.db.types import utcnow


class MailedTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def issue(self, user_id: int, purpose: str, ttl_seconds: int) -> str:
        token = new_secret(nbytes=32)
        now = utcnow()
        await self.db.execute("tokens.insert", user_tokens.insert().values(
            user_id=user_id, purpose=purpose, token_hash=hash_secret(token), created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds)))
        return token

    async def consume(self, token: str, purpose: str) -> int | None:
        """The user id when the token is valid, unused and unexpired; it is used up either way."""
        now = utcnow()
        row: Any = await self.db.fetch_one("tokens.consume", user_tokens.update().where(
            user_tokens.c.token_hash == hash_secret(token), user_tokens.c.purpose == purpose,
            user_tokens.c.used_at.is_(None), user_tokens.c.expires_at > now,
        ).values(used_at=now).returning(user_tokens.c.user_id))
        return int(row["user_id"]) if row is not None else None

    async def void_all(self, user_id: int, purpose: str) -> None:
        await self.db.execute("tokens.void", user_tokens.update().where(
            user_tokens.c.user_id == user_id, user_tokens.c.purpose == purpose, user_tokens.c.used_at.is_(None),
        ).values(used_at=utcnow()))

    async def outstanding(self, user_id: int, purpose: str) -> int:
        return int(await self.db.fetch_val("tokens.outstanding", sa.select(sa.func.count()).where(
            user_tokens.c.user_id == user_id, user_tokens.c.purpose == purpose,
            user_tokens.c.used_at.is_(None), user_tokens.c.expires_at > utcnow())) or 0)
