"""Many members at once for the benchmarks: users and sessions written straight into the
database, access tokens signed with the server's key, as a sign-in would issue them.

Registering through the API costs an Argon2 hash per user (by design); 2,000 members would take
minutes before the measurement starts. The rows and tokens are exactly those a sign-in makes
(`SessionStore.create`, `TokenSigner`), only the password is a placeholder no one can use.
"""

from __future__ import annotations

import asyncio
import os

from server.auth.service import AuthService
from server.auth.sessions import ClientInfo
from server.db.database import Database
from server.db.queries import users as user_queries
from server.observability.metrics import Metrics
from server.settings import load_settings


async def _mint(env: dict[str, str], prefix: str, count: int) -> list[str]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    db = Database(settings.database, Metrics())
    await db.connect()
    try:
        auth = AuthService(settings, db)
        tokens = []
        for i in range(count):
            name = f"{prefix}{i:05d}"
            user_id = await user_queries.insert(db, username=name, email=f"{name}@example.com",
                                                role="member", display_name=name)
            pair = await auth.sessions.create(user_id, "member", ClientInfo("127.0.0.1", "vonix-bench"))
            tokens.append(pair.access_token)
        return tokens
    finally:
        await db.disconnect()


def mint_members(env: dict[str, str], prefix: str, count: int) -> list[str]:
    """`count` members named prefix00000.. in the database `env` points at; their access tokens."""
    return asyncio.run(_mint(env, prefix, count))
