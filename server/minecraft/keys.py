"""Game server API keys (`vxs_…`) and the bot account each game server's keys sign in as.

A key is shown once when an admin issues it; only its SHA-256 is stored (with an 8-character
prefix so lists tell keys apart). It belongs to one game server and signs the plugin in as that
server's bot: HTTP plugin routes and the websocket alike (`AuthService.principal_from_token`). A
revoked key is refused from the next request on (keys are looked up on every use, never cached),
and its open websockets are closed on every replica: the key's principal carries the session id
`mckey:<id>`, and revoking publishes it on the revocation channel like a revoked session.

`last_used_at` is written at most once a minute per key: the UPDATE itself only matches a row whose
value is older, so replicas never need to agree on anything else.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from server.auth import audit
from server.auth.bots import DEFAULT_SCOPES
from server.auth.principal import SERVER_KEY_PREFIX, Principal
from server.auth.tokens import hash_secret, new_secret, same
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.db.tables import bots, users
from server.db.tables_linking import mc_api_keys, mc_server_bots
from server.db.types import utcnow
from server.errors import Conflict, NotFound

SESSION_PREFIX = "mckey:"  # a key's websockets are registered under this session id
TOUCH_EVERY = timedelta(minutes=1)
BOT_SCOPES = tuple(sorted(DEFAULT_SCOPES))


def key_session(key_id: int) -> str:
    return f"{SESSION_PREFIX}{key_id}"


def key_out(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "server_id": row["server_id"], "name": row["name"], "prefix": row["prefix"],
            "created_at": _iso(row["created_at"]), "created_by": row["created_by"],
            "last_used_at": _iso(row["last_used_at"]), "revoked_at": _iso(row["revoked_at"]),
            "revoked": row["revoked_at"] is not None}


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def bot_name(server_name: str) -> str:
    """`Survival` -> `Survival_game`: letters, digits and _ only, 3 to 32 characters."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", server_name).strip("_")[:27]
    return f"{slug}_game" if slug else "game_server"


async def server_bot(db: Database, server_id: int, server_name: str, actor_id: int | None) -> int:
    """The user id of the server's bot, created (account, `bots` row and link) on first need."""
    found = await db.fetch_val("mc_bots.by_server", sa.select(mc_server_bots.c.user_id).where(
        mc_server_bots.c.server_id == server_id))
    if found is not None:
        return int(found)
    now = utcnow()
    for name in (bot_name(server_name), f"game_server_{server_id}"):
        try:
            async with db.transaction():
                user_id = await user_queries.insert(db, username=name, role="bot", display_name=server_name[:64])
                bot_id = int(await db.fetch_val("bots.insert", bots.insert().values(
                    user_id=user_id, owner_id=actor_id, name=name, scopes=list(BOT_SCOPES),
                    created_at=now).returning(bots.c.id)))
                await db.execute("mc_bots.insert", mc_server_bots.insert().values(
                    server_id=server_id, user_id=user_id, created_at=now))
        except UniqueViolation:
            again = await db.fetch_val("mc_bots.by_server", sa.select(mc_server_bots.c.user_id).where(
                mc_server_bots.c.server_id == server_id))
            if again is not None:  # another request made it meanwhile
                return int(again)
            continue  # the name is taken by someone else: the fallback name
        await audit.record(db, "bot.created", actor_id=actor_id, target_type="bot", target_id=bot_id,
                           scopes=list(BOT_SCOPES), game_server_id=server_id)
        return user_id
    raise Conflict("The names of this server's bot are taken by other accounts.", code="bot_name_taken")


async def server_of_bot(db: Database, user_id: int) -> int | None:
    value = await db.fetch_val("mc_bots.server_of", sa.select(mc_server_bots.c.server_id).where(
        mc_server_bots.c.user_id == user_id))
    return None if value is None else int(value)


async def issue(db: Database, server_id: int, server_name: str, name: str,
                actor_id: int | None) -> tuple[dict[str, Any], str]:
    """A new key for the server: (its row as the API shows it, the key, shown once)."""
    await server_bot(db, server_id, server_name, actor_id)
    key = new_secret(SERVER_KEY_PREFIX, 32)
    row = await db.fetch_one("mc_keys.insert", mc_api_keys.insert().values(
        server_id=server_id, name=name, key_hash=hash_secret(key), prefix=key[:8], created_at=utcnow(),
        created_by=actor_id).returning(*mc_api_keys.c))
    assert row is not None
    await audit.record(db, "mc_key.issued", actor_id=actor_id, target_type="mc_api_key", target_id=row["id"],
                       game_server_id=server_id, prefix=row["prefix"])
    return key_out(row), key


async def listed(db: Database, server_id: int) -> list[dict[str, Any]]:
    rows = await db.fetch_all("mc_keys.list", sa.select(mc_api_keys).where(
        mc_api_keys.c.server_id == server_id).order_by(mc_api_keys.c.id.desc()))
    return [key_out(row) for row in rows]


async def revoke(db: Database, server_id: int, key_id: int, actor_id: int | None) -> tuple[dict[str, Any], int | None]:
    """Revoke (idempotent): (the key's row, its bot's user id). 404 for a key of another server."""
    row = await db.fetch_one("mc_keys.revoke", mc_api_keys.update().where(
        mc_api_keys.c.id == key_id, mc_api_keys.c.server_id == server_id, mc_api_keys.c.revoked_at.is_(None),
    ).values(revoked_at=utcnow()).returning(*mc_api_keys.c))
    if row is None:
        row = await db.fetch_one("mc_keys.by_id", sa.select(mc_api_keys).where(
            mc_api_keys.c.id == key_id, mc_api_keys.c.server_id == server_id))
        if row is None:
            raise NotFound("No such key for this server.", code="key_not_found")
    else:
        await audit.record(db, "mc_key.revoked", actor_id=actor_id, target_type="mc_api_key", target_id=key_id,
                           game_server_id=server_id, prefix=row["prefix"])
    bot = await db.fetch_val("mc_bots.by_server", sa.select(mc_server_bots.c.user_id).where(
        mc_server_bots.c.server_id == server_id))
    return key_out(row), None if bot is None else int(bot)


async def principal(db: Database, token: str) -> Principal | None:
    """The game server's bot for a live key; None for an unknown or revoked key or an inactive bot."""
    digest = hash_secret(token)
    row = await db.fetch_one("mc_keys.by_hash", sa.select(
        mc_api_keys.c.id, mc_api_keys.c.server_id, mc_api_keys.c.key_hash, mc_api_keys.c.revoked_at,
        mc_api_keys.c.last_used_at, users.c.id.label("user_id"), users.c.username, users.c.status,
    ).select_from(mc_api_keys.join(mc_server_bots, mc_server_bots.c.server_id == mc_api_keys.c.server_id)
                  .join(users, users.c.id == mc_server_bots.c.user_id))
        .where(mc_api_keys.c.key_hash == digest))
    if row is None or not same(row["key_hash"], digest) or row["revoked_at"] is not None \
            or row["status"] != "active":
        return None
    now = utcnow()
    if row["last_used_at"] is None or now - row["last_used_at"] >= TOUCH_EVERY:
        await db.execute("mc_keys.touch", mc_api_keys.update().where(
            mc_api_keys.c.id == row["id"],
            sa.or_(mc_api_keys.c.last_used_at.is_(None), mc_api_keys.c.last_used_at < now - TOUCH_EVERY),
        ).values(last_used_at=now))
    return Principal(user_id=row["user_id"], username=row["username"], role="bot", kind="bot",
                     scopes=frozenset(BOT_SCOPES), session_id=key_session(row["id"]),
                     game_server_id=int(row["server_id"]))
