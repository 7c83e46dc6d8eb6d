"""Bot accounts: a user with role `bot`, scopes, and tokens shown once and stored hashed."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth import audit
from server.auth.principal import BOT_TOKEN_PREFIX
from server.auth.tokens import hash_secret, new_secret
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.db.tables import bot_tokens, bots
from server.db.types import utcnow
from server.errors import Conflict

DEFAULT_SCOPES = ("subscribe", "publish", "history", "presence")
ALLOWED_SCOPES = frozenset(DEFAULT_SCOPES)


@dataclass(frozen=True)
class CreatedBot:
    bot_id: int
    user_id: int
    name: str
    scopes: list[str]
    token: str  # shown once; only its hash is stored


async def create_bot(db: Database, name: str, scopes: list[str] | None, owner_id: int | None) -> CreatedBot:
    scopes = sorted(set(scopes or DEFAULT_SCOPES))
    token = new_secret(BOT_TOKEN_PREFIX, 32)
    now = utcnow()
    try:
        async with db.transaction():
            user_id = await user_queries.insert(db, username=name, role="bot", display_name=name)
            bot_id = int(await db.fetch_val("bots.insert", bots.insert().values(
                user_id=user_id, owner_id=owner_id, name=name, scopes=scopes, created_at=now,
            ).returning(bots.c.id)))
            await db.execute("bot_tokens.insert", bot_tokens.insert().values(
                bot_id=bot_id, token_hash=hash_secret(token), prefix=token[:8], created_at=now))
    except UniqueViolation:
        raise Conflict("A user or bot with that name exists.", code="bot_name_taken") from None
    await audit.record(db, "bot.created", actor_id=owner_id, target_type="bot", target_id=bot_id,
                       scopes=scopes)
    return CreatedBot(bot_id, user_id, name, scopes, token)
