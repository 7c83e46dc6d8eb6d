"""Which Vonix account a provider identity belongs to: sign in, link, or sign up; and unlinking.

Order of the callback: a known (provider, subject) signs its user in; a flow started while logged
in links to that user; a verified provider email that matches a user's verified email links to and
signs in that user; a verified provider email that matches an unverified one (an account from
before migration 0017 that never confirmed its address) is refused (whoever registered that
address first may not own it); otherwise a new account is made, with no password.

An email the provider did not verify is never compared with accounts: anyone can put any address
on a provider account, so a refusal there would tell them whether the address has a Vonix account.
It becomes the new account's pending address (shown to the member, never owned until confirmed).
A provider-verified address is the member's own: it is stored as confirmed, and accounts that only
claimed it at sign-up (pending) do not block it; they can no longer confirm it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.auth import audit
from server.auth.oauth import Flow, Profile, Refused, username_base
from server.auth.service import AuthService
from server.auth.sessions import ClientInfo
from server.db.errors import UniqueViolation
from server.db.queries import oauth as oauth_queries
from server.db.queries import users as user_queries
from server.db.tables import users
from server.db.types import utcnow
from server.errors import Conflict, NotFound

USERNAME_ATTEMPTS = 12


@dataclass(frozen=True)
class Outcome:
    user: Any
    action: str  # login | linked | signup
    new_session: bool  # False when linking to the user already signed in


async def resolve(auth: AuthService, profile: Profile, flow: Flow, client: ClientInfo) -> Outcome:
    db = auth.db
    existing = await oauth_queries.by_provider_id(db, profile.provider, profile.subject)
    if flow.link_user_id is not None:
        return await _link_signed_in(auth, profile, flow, existing, client)
    if existing is not None:
        user = _active(await user_queries.by_id(db, existing["user_id"]))
        await audit.record(db, "oauth.login", actor_id=user["id"], target_type="user", target_id=user["id"],
                           ip=client.ip, provider=profile.provider)
        return Outcome(user, "login", new_session=True)
    if profile.email is not None and profile.email_verified:
        match = await user_queries.by_email(db, profile.email)
        if match is not None:
            if match["email_verified_at"] is None:  # only says so to whoever the provider verified
                raise Refused("email_unverified_conflict",
                              f"email matches user {match['id']}; one side is not verified")
            user = _active(match)
            await _insert_link(db, user["id"], profile)
            await audit.record(db, "oauth.linked", actor_id=user["id"], target_type="user", target_id=user["id"],
                               ip=client.ip, provider=profile.provider, via="verified_email")
            return Outcome(user, "linked", new_session=True)
    user = await _sign_up(auth, profile)
    await audit.record(db, "oauth.signup", actor_id=user["id"], target_type="user", target_id=user["id"],
                       ip=client.ip, provider=profile.provider)
    return Outcome(user, "signup", new_session=True)


async def _link_signed_in(auth: AuthService, profile: Profile, flow: Flow, existing: Any,
                          client: ClientInfo) -> Outcome:
    session = await auth.sessions.get(flow.link_session_id) if flow.link_session_id else None
    if (session is None or session["revoked_at"] is not None or session["user_id"] != flow.link_user_id
            or session["expires_at"] <= utcnow()):
        raise Refused("invalid_state", "the session that started linking has ended")
    assert flow.link_user_id is not None  # `resolve` calls this only for a linking flow
    user = _active(await user_queries.by_id(auth.db, flow.link_user_id))
    if existing is not None:
        if existing["user_id"] == user["id"]:
            return Outcome(user, "linked", new_session=False)
        raise Refused("already_linked", f"{profile.provider} account belongs to user {existing['user_id']}")
    await _insert_link(auth.db, user["id"], profile)
    await audit.record(auth.db, "oauth.linked", actor_id=user["id"], target_type="user", target_id=user["id"],
                       ip=client.ip, provider=profile.provider, via="signed_in")
    return Outcome(user, "linked", new_session=False)


def _active(user: Any) -> Any:
    if user is None or user["status"] != "active" or user["role"] == "bot":
        raise Refused("account_disabled", "the account is not active (or is a bot)")
    return user


async def _insert_link(db: Any, user_id: int, profile: Profile) -> None:
    """One account per provider per user (unlinking names only the provider)."""
    if any(row["provider"] == profile.provider for row in await oauth_queries.for_user(db, user_id)):
        raise Refused("already_linked", f"user {user_id} already has a {profile.provider} account")
    try:
        await oauth_queries.insert(db, user_id, profile.provider, profile.subject, profile.email)
    except UniqueViolation:  # the same identity linked by a concurrent callback
        raise Refused("already_linked", "linked concurrently") from None


async def _sign_up(auth: AuthService, profile: Profile) -> Any:
    db = auth.db
    base = username_base(profile.names)
    for attempt in range(USERNAME_ATTEMPTS):
        suffix = "" if attempt == 0 else str(secrets.randbelow(10 ** min(2 + attempt, 8)))
        username = base[:32 - len(suffix)] + suffix
        if len(username) < 3 or await user_queries.by_username(db, username) is not None:
            continue
        try:
            async with db.transaction():
                verified = profile.email_verified
                user_id = await user_queries.insert(
                    db, username=username, password_hash=None,
                    email=profile.email if verified else None, pending_email=None if verified else profile.email,
                    email_verified_at=utcnow() if verified and profile.email else None,
                    display_name=profile.display_name or username, avatar_url=profile.avatar_url)
                await oauth_queries.insert(db, user_id, profile.provider, profile.subject, profile.email)
        except UniqueViolation as exc:
            constraint = exc.constraint or ""
            if "username" in constraint:
                continue  # taken between the check and the insert
            if "email" in constraint:  # only a provider-verified address is unique: confirmed concurrently
                raise Refused("email_unverified_conflict", "the email was registered concurrently") from None
            raise Refused("already_linked", "signed up concurrently") from None
        return await user_queries.by_id(db, user_id)
    raise Refused("provider_error", f"no free username near {base!r}")


async def unlink(auth: AuthService, user_id: int, provider: str, ip: str | None) -> None:
    """Remove a linked provider unless it is the account's last way to sign in."""
    db = auth.db
    async with db.transaction():
        # Lock the user row (PostgreSQL) so two unlinks at once cannot both see "another remains".
        user = await db.fetch_one("users.lock", sa.select(users.c.id, users.c.password_hash).where(
            users.c.id == user_id).with_for_update())
        linked = await oauth_queries.for_user(db, user_id)
        if not any(row["provider"] == provider for row in linked):
            raise NotFound(f"No linked {provider} account.", code="not_linked")
        others = [row for row in linked if row["provider"] != provider]
        if user is None or (user["password_hash"] is None and not others):
            raise Conflict("This is your only way to sign in; set a password or link another provider first.",
                           code="last_login_method")
        await oauth_queries.delete(db, user_id, provider)
    await audit.record(db, "oauth.unlinked", actor_id=user_id, target_type="user", target_id=user_id, ip=ip,
                       provider=provider)
