"""The accounts use cases: register, log in (with lockout and 2FA), refresh, log out, sessions.

Routes validate input and call these; these write, commit, then publish events. Every failure of
a credential answers the same way whether or not the account exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from server.auth import audit
from server.auth.keys import Keyring
from server.auth.lockout import Lockout, LockoutPolicy
from server.auth.mail import ConsoleMailer, Mailer, SmtpMailer
from server.auth.passwords import PasswordRejected, Passwords
from server.auth.principal import BOT_TOKEN_PREFIX, SERVER_KEY_PREFIX, Principal
from server.auth.sessions import ClientInfo, RefreshRejected, SessionStore, TokenPair
from server.auth.tokens import InvalidToken, TokenSigner, hash_secret
from server.db.database import Database
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.errors import AppError, Conflict, Forbidden, Unauthorized, ValidationFailed
from server.ratelimit.client_ip import TrustedProxies, client_ip
from server.settings import Settings

REVOCATIONS_CHANNEL = "_sys:revocations"


class AccountLocked(AppError):
    status, code, message = 429, "account_locked", "Too many failed attempts; try again later."


INVALID_CREDENTIALS = "invalid_credentials"


@dataclass(frozen=True)
class LoginResult:
    user: Any
    tokens: TokenPair | None = None
    mfa_ticket: str | None = None


class AuthService:
    cache: Any = None  # the app's Cache once attached: principals are then cached per session
    _principals: Any = None
    # Set by Resources.build (moderation): reactivate a suspended account whose site bans are over.
    unsuspend_if_clear: Any = None

    def __init__(self, settings: Settings, db: Database, publish: Any = None, breakers: Any = None) -> None:
        self.settings = settings
        self.breakers = breakers
        self.db = db
        self.keyring = Keyring.from_settings(settings)
        self.signer = TokenSigner(self.keyring, settings.access_token_ttl)
        self.passwords = Passwords(settings.password_min_length)
        self.sessions = SessionStore(db, self.signer, settings.refresh_token_ttl)
        self.lockout = Lockout(db, LockoutPolicy(settings.lockout_threshold, settings.lockout_window,
                                                 settings.lockout_duration, settings.ip_failure_limit))
        self.mailer: Mailer = (
            SmtpMailer(settings.smtp_url.get_secret_value(), settings.mail_from, settings.smtp_timeout,
                       breakers=breakers)
            if settings.smtp_url is not None else ConsoleMailer(settings.mail_from)
        )
        self._publish = publish  # async (channel, bytes) -> None; set once the broker exists
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)

    def attach_publisher(self, publish: Any) -> None:
        self._publish = publish

    def attach_cache(self, cache: Any) -> None:
        """Cache who a session is (session + user rows) under `principal:<session id>`, tagged
        `session:<id>` and `user:<id>`; strict, so never served stale and never from a replica's
        memory while invalidations might not reach it."""
        self.cache = cache
        self._principals = cache.namespace("principal", ttl=self.settings.cache_principal_ttl, strict=True)

    # --- registration ------------------------------------------------------------------------
    async def register(self, username: str, email: str, password: str, client: ClientInfo) -> Any:
        """A new account whose address is only pending (see `mailed_tokens.mail_after_signup`).

        The same statements run whether or not another account owns the address, and nothing
        here looks that up: only `username_taken` can be refused, because usernames are public.
        """
        try:
            self.passwords.check_policy(password, username=username, email=email)
        except PasswordRejected as exc:
            raise ValidationFailed(details=[{"field": "password", "code": exc.code,
                                             "message": str(exc)}]) from None
        password_hash = await self.passwords.hash(password)
        try:
            user_id = await user_queries.insert(self.db, username=username, email=None,
                                                pending_email=email.strip().lower(),
                                                password_hash=password_hash, display_name=username)
        except UniqueViolation as exc:
            raise _taken(exc) from None
        await audit.record(self.db, "user.registered", actor_id=user_id, target_type="user",
                           target_id=user_id, ip=client.ip)
        return await user_queries.by_id(self.db, user_id)

    # --- login -------------------------------------------------------------------------------
    async def login(self, login: str, password: str, client: ClientInfo) -> LoginResult:
        key = login.strip().lower()
        user = await user_queries.by_login(self.db, key)
        user_id = user["id"] if user is not None else None
        # Always verify (a dummy hash for unknown accounts) so timing does not reveal existence.
        valid = await self.passwords.verify(user["password_hash"] if user else None, password)
        lock = await self.lockout.active(user_id, key, client.ip)
        if lock is not None:
            raise AccountLocked(headers={"Retry-After": str(lock.retry_after)})
        if valid and user is not None and user["status"] == "suspended" and self.unsuspend_if_clear is not None \
                and await self.unsuspend_if_clear(user["id"]):  # a timed site ban ran out
            user = await user_queries.by_id(self.db, user["id"])
        if not valid or user is None or user["status"] != "active":
            new_lock = await self.lockout.record(user_id, key, client.ip, success=False)
            if new_lock is not None and user_id is not None:
                await self._notify_locked(user)
                await audit.record(self.db, "user.locked", target_type="user", target_id=user_id,
                                   ip=client.ip)
            raise Unauthorized("Wrong login or password.", code=INVALID_CREDENTIALS)
        await self.lockout.record(user_id, key, client.ip, success=True)
        assert user_id is not None  # user["id"]: user is not None past the check above
        if self.settings.require_verified_email and user_queries.email_unconfirmed(user):
            raise Forbidden("Confirm your email address first; we sent you a link.", code="email_unverified")
        if self.passwords.needs_rehash(user["password_hash"]):
            await user_queries.update(self.db, user_id, password_hash=await self.passwords.hash(password))
        if user["totp_enabled_at"] is not None:
            ticket = self.signer.issue_ticket("mfa", str(user_id), self.settings.mfa_ticket_ttl)
            return LoginResult(user=user, mfa_ticket=ticket)
        return LoginResult(user=user, tokens=await self.start_session(user, client))

    async def start_session(self, user: Any, client: ClientInfo, *, mfa: bool = False) -> TokenPair:
        tokens = await self.sessions.create(user["id"], user["role"], client, mfa=mfa)
        await user_queries.update(self.db, user["id"], last_seen_at=_now())
        await audit.record(self.db, "session.created", actor_id=user["id"], target_type="session",
                           target_id=tokens.session_id, ip=client.ip, mfa=mfa)
        return tokens

    async def _notify_locked(self, user: Any) -> None:
        from server.db.tables import notifications

        await self.db.execute("notifications.insert", notifications.insert().values(
            user_id=user["id"], kind="account_locked", data={"minutes": self.settings.lockout_duration // 60},
            created_at=_now()))
        if user["email"]:
            await self.mailer.send(
                user["email"], "Your Vonix account was locked",
                "Several failed sign-in attempts locked your account for "
                f"{self.settings.lockout_duration // 60} minutes. If this wasn't you, reset your password.")

    # --- tokens --------------------------------------------------------------------------------
    async def refresh(self, refresh_token: str, client: ClientInfo) -> TokenPair:
        try:
            return await self.sessions.rotate(refresh_token, self._role_of)
        except RefreshRejected as exc:
            if exc.code == "refresh_token_reused" and exc.session_id:
                await self.revoke_sessions([exc.session_id], "refresh_reuse", actor_id=None,
                                           user_id=exc.user_id, ip=client.ip)
            raise Unauthorized("The refresh token is not valid.", code=exc.code) from None

    async def _role_of(self, user_id: int) -> str:
        user = await user_queries.by_id(self.db, user_id)
        if user is None or user["status"] != "active":
            raise RefreshRejected("account_inactive")
        return str(user["role"])

    async def principal_from_token(self, token: str, *, via_cookie: bool = False) -> Principal:
        if token.startswith(BOT_TOKEN_PREFIX):
            return await self._bot_principal(token)
        if token.startswith(SERVER_KEY_PREFIX):
            return await self._server_key_principal(token)
        claims = self.signer.verify_access(token)
        identity = await self._identity(claims.session_id)
        if identity is None or identity["user_id"] != claims.user_id:
            raise InvalidToken("session revoked")
        if not identity["active"]:
            raise InvalidToken("account inactive")
        return Principal(user_id=identity["user_id"], username=identity["username"], role=identity["role"],
                         session_id=claims.session_id, via_cookie=via_cookie, expires_at=claims.expires_at,
                         rank=identity.get("rank"))

    async def _identity(self, session_id: str) -> dict[str, Any] | None:
        if self.cache is None:
            return await self._load_identity(session_id)
        return await self.cache.get(  # type: ignore[no-any-return]
            self._principals, session_id, lambda: self._load_identity(session_id),
            tags=lambda identity: [f"session:{session_id}"] + ([f"user:{identity['user_id']}"] if identity else []))

    async def _load_identity(self, session_id: str) -> dict[str, Any] | None:
        """The session's user as the token check needs it; None for an unknown or revoked session."""
        session = await self.sessions.get(session_id)
        if session is None or session["revoked_at"] is not None:
            return None
        user = await user_queries.by_id(self.db, session["user_id"])
        if user is None:
            return None
        return {"user_id": user["id"], "username": user["username"], "role": user["role"],
                "active": user["status"] == "active", "rank": await self._rank(user["rank_id"])}

    async def _rank(self, rank_id: int | None) -> dict[str, Any] | None:
        if rank_id is None:
            return None
        import sqlalchemy as sa

        from server.db.tables import ranks

        row = await self.db.fetch_one("ranks.by_id", sa.select(ranks.c.name, ranks.c.colour, ranks.c.badge).where(
            ranks.c.id == rank_id))
        return None if row is None else {"name": row["name"], "colour": row["colour"], "badge": row["badge"]}

    async def forget_sessions(self, session_ids: list[str]) -> None:
        """Drop cached principals of these sessions on every replica (before the request returns)."""
        if self.cache is not None and session_ids:
            await self.cache.invalidate(tags=[f"session:{s}" for s in session_ids])

    async def user_changed(self, user_id: int) -> None:
        """Call after writing a user's role, status or name: cached principals are dropped everywhere."""
        if self.cache is not None:
            await self.cache.invalidate(tags=[f"user:{user_id}"])

    async def _bot_principal(self, token: str) -> Principal:
        import sqlalchemy as sa

        from server.db.tables import bot_tokens, bots, users

        row = await self.db.fetch_one("bots.by_token_hash", sa.select(
            users.c.id, users.c.username, users.c.status, bots.c.scopes, bot_tokens.c.revoked_at,
        ).select_from(bot_tokens.join(bots, bots.c.id == bot_tokens.c.bot_id)
                      .join(users, users.c.id == bots.c.user_id))
            .where(bot_tokens.c.token_hash == hash_secret(token)))
        if row is None or row["revoked_at"] is not None or row["status"] != "active":
            raise InvalidToken("unknown bot token")
        return Principal(user_id=row["id"], username=row["username"], role="bot", kind="bot",
                         scopes=frozenset(row["scopes"] or []))

    async def _server_key_principal(self, token: str) -> Principal:
        """A game server's API key: its bot (server/minecraft/keys.py; never cached, so a revoked
        key is refused at once)."""
        from server.minecraft import keys

        principal = await keys.principal(self.db, token)
        if principal is None:
            raise InvalidToken("unknown server key")
        return principal

    # --- sessions ------------------------------------------------------------------------------
    async def revoke_sessions(
        self, session_ids: list[str], reason: str, *, actor_id: int | None, user_id: int | None,
        ip: str | None = None,
    ) -> list[str]:
        revoked = await self.sessions.revoke(session_ids, reason)
        await self.forget_sessions(revoked)
        for session_id in revoked:
            await audit.record(self.db, "session.revoked", actor_id=actor_id, target_type="session",
                               target_id=session_id, ip=ip, reason=reason, user_id=user_id)
        if revoked:
            await self.publish_revocation(revoked, user_id)
        return revoked

    async def publish_revocation(self, session_ids: list[str], user_id: int | None) -> None:
        """After commit: tell every replica to close these sessions' websockets (code 4003)."""
        if self._publish is None:
            return
        import orjson

        await self._publish(REVOCATIONS_CHANNEL, orjson.dumps({"sessions": session_ids, "user_id": user_id}))


def _taken(exc: UniqueViolation) -> Conflict:
    """Only usernames are unique at sign-up (a pending email is not), and they are public anyway."""
    constraint = exc.constraint or ""
    if "username" in constraint:
        return Conflict("That username is taken.", code="username_taken")
    return Conflict()


def _now() -> Any:
    from server.db.types import utcnow

    return utcnow()


def client_info(connection: HTTPConnection) -> ClientInfo:
    """Who is asking: the IP is found by the same rule as the rate limiter's key (`client_ip`:
    X-Forwarded-For only from a peer in TRUSTED_PROXIES), so the lockout's per-IP count, sessions
    and the audit log agree with it in any ASGI server, not only where uvicorn rewrote the peer."""
    client = connection.client
    ip = client_ip(connection.scope, auth_of(connection).trusted_proxies) if client else None
    return ClientInfo(ip=ip, user_agent=connection.headers.get("user-agent"))


def auth_of(connection: HTTPConnection) -> AuthService:
    return connection.app.state.vonix.auth  # type: ignore[no-any-return]
