"""Session lookups: refresh by token hash (unique index), list per user (user_id, created_at)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.db.tables import refresh_tokens, sessions


def refresh_lookup_query(token_hash: str) -> sa.Select[Any]:
    return (
        sa.select(refresh_tokens, sessions.c.user_id, sessions.c.revoked_at.label("session_revoked_at"))
        .join(sessions, sessions.c.id == refresh_tokens.c.session_id)
        .where(refresh_tokens.c.token_hash == token_hash)
    )


def for_user_query(user_id: int) -> sa.Select[Any]:
    return (
        sa.select(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        .order_by(sessions.c.created_at.desc())
    )
