"""Sessions and refresh-token families.

A session is a refresh-token family: each refresh marks the presented token used and issues a new
one. Presenting a used token again means it was stolen or replayed, so the whole family (the
session) is revoked, and every live websocket of it is closed through the revocation event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from server.auth.tokens import TokenSigner, hash_secret, new_secret
from server.auth.user_agent import Client, parse_user_agent
from server.db.database import Database
from server.db.queries.sessions import for_user_query, refresh_lookup_query
from server.db.tables import refresh_tokens, sessions
from server.db.types import utcnow


@dataclass(frozen=True)
class ClientInfo:
    """Who opened a session: its address and what its User-Agent says (for the sessions list)."""

    ip: str | None
    user_agent: str | None

    @property
    def client(self) -> Client:
        return parse_user_agent(self.user_agent)

    @property
    def device(self) -> str:
        """Short label stored with the session, e.g. "Chrome on Android"."""
        return self.client.device

    @property
    def browser(self) -> str:
        """E.g. "Chrome 120", "Firefox 121", "Safari 17"."""
        return self.client.browser

    @property
    def os(self) -> str:
        """E.g. "Android 14", "Windows", "iOS 17"."""
        return self.client.os


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: str
    access_expires_at: int = 0  # unix seconds: what the readable `vonix_session` cookie tells the PWA

    def body(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": "Bearer", "expires_in": self.expires_in}


class RefreshRejected(Exception):
    def __init__(self, code: str, session_id: str | None = None, user_id: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.session_id = session_id
        self.user_id = user_id


class SessionStore:
    def __init__(self, db: Database, signer: TokenSigner, refresh_ttl: int) -> None:
        self.db = db
        self.signer = signer
        self.refresh_ttl = refresh_ttl

    async def create(self, user_id: int, role: str, client: ClientInfo, *, mfa: bool = False) -> TokenPair:
        session_id = uuid.uuid4().hex
        now = utcnow()
        refresh = new_secret()
        async with self.db.transaction():
            await self.db.execute("sessions.insert", sessions.insert().values(
                id=session_id, user_id=user_id, created_at=now, last_active_at=now,
                expires_at=now + timedelta(seconds=self.refresh_ttl), ip=client.ip,
                user_agent=(client.user_agent or "")[:512] or None, device=client.device, mfa=mfa))
            await self._insert_refresh(session_id, refresh)
        return self._pair(user_id, role, session_id, refresh)

    async def _insert_refresh(self, session_id: str, refresh: str) -> None:
        now = utcnow()
        await self.db.execute("refresh_tokens.insert", refresh_tokens.insert().values(
            session_id=session_id, token_hash=hash_secret(refresh), created_at=now,
            expires_at=now + timedelta(seconds=self.refresh_ttl)))

    def _pair(self, user_id: int, role: str, session_id: str, refresh: str) -> TokenPair:
        access, expires_at = self.signer.issue_access(user_id, session_id, role)
        return TokenPair(access, refresh, self.signer.access_ttl, session_id, expires_at)

    async def rotate(self, refresh: str, role_of: Any) -> TokenPair:
        """Exchange a refresh token for a new pair; a reused one revokes its family."""
        row = await self.db.fetch_one("sessions.refresh_by_hash", refresh_lookup_query(hash_secret(refresh)))
        if row is None:
            raise RefreshRejected("invalid_refresh_token")
        session_id, user_id = row["session_id"], row["user_id"]
        if row["session_revoked_at"] is not None:
            raise RefreshRejected("session_revoked", session_id, user_id)
        now = utcnow()
        if row["used_at"] is not None:
            raise RefreshRejected("refresh_token_reused", session_id, user_id)
        if row["expires_at"] <= now:
            raise RefreshRejected("refresh_token_expired", session_id, user_id)
        new_refresh = new_secret()
        async with self.db.transaction():
            claimed = await self.db.fetch_val("refresh_tokens.claim", refresh_tokens.update().where(
                refresh_tokens.c.id == row["id"], refresh_tokens.c.used_at.is_(None),
            ).values(used_at=now).returning(refresh_tokens.c.id))
            if claimed is None:  # a concurrent use won the race: that is a reuse too
                raise RefreshRejected("refresh_token_reused", session_id, user_id)
            await self._insert_refresh(session_id, new_refresh)
            await self.db.execute("sessions.touch", sessions.update().where(
                sessions.c.id == session_id).values(last_active_at=now))
        role = await role_of(user_id)
        return self._pair(user_id, role, session_id, new_refresh)

    async def get(self, session_id: str) -> Any:
        return await self.db.fetch_one("sessions.by_id", sa.select(sessions).where(sessions.c.id == session_id))

    async def list_for_user(self, user_id: int) -> list[Any]:
        return await self.db.fetch_all("sessions.for_user", for_user_query(user_id))

    async def revoke(self, session_ids: list[str], reason: str) -> list[str]:
        """Revoke the given live sessions; returns the ids actually revoked."""
        if not session_ids:
            return []
        rows = await self.db.fetch_all("sessions.revoke", sessions.update().where(
            sessions.c.id.in_(session_ids), sessions.c.revoked_at.is_(None),
        ).values(revoked_at=utcnow(), revoked_reason=reason).returning(sessions.c.id))
        return [r["id"] for r in rows]

    async def live_ids_for_user(self, user_id: int, *, except_id: str | None = None) -> list[str]:
        query = sa.select(sessions.c.id).where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        if except_id is not None:
            query = query.where(sessions.c.id != except_id)
        return [r["id"] for r in await self.db.fetch_all("sessions.live_for_user", query)]
