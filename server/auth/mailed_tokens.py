"""Single-use mailed tokens: password reset (30 minutes) and email verification (24 hours), and
the mails that carry them.

The token is 32 random bytes, mailed as a link and stored only as its SHA-256. Using it marks it
used in the same statement that finds it, so two concurrent uses cannot both succeed.

Sign-up and forgot-password never tell the asker whether an address has an account: the routes
answer before any of this runs (in a background task, the same work is spawned either way), and
what differs — a verification link or a notice to the address's owner, a reset link or nothing —
happens only in the mailbox of whoever owns the address.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from server.auth import audit
from server.auth.mail import Mailer
from server.auth.tokens import hash_secret, new_secret
from server.db.database import Database
from server.db.queries import users as user_queries
from server.db.tables import user_tokens
from server.db.types import utcnow

VERIFY_TTL = 24 * 3600
MAX_LIVE_VERIFY_LINKS = 3  # per account: "send the link again" stops mailing past this


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

    async def issue_within(self, user_id: int, purpose: str, ttl_seconds: int, limit: int) -> str | None:
        """A token, unless `limit` live ones were issued before it: checked after the insert, by
        rank, so requests racing on any replica cannot all pass a count taken before either wrote."""
        token = new_secret(nbytes=32)
        now = utcnow()
        token_id = await self.db.fetch_val("tokens.insert", user_tokens.insert().values(
            user_id=user_id, purpose=purpose, token_hash=hash_secret(token), created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds)).returning(user_tokens.c.id))
        earlier = int(await self.db.fetch_val("tokens.rank", sa.select(sa.func.count()).where(
            user_tokens.c.user_id == user_id, user_tokens.c.purpose == purpose, user_tokens.c.id <= token_id,
            user_tokens.c.used_at.is_(None), user_tokens.c.expires_at > now)) or 0)
        if earlier > limit:
            await self.db.execute("tokens.withdraw", user_tokens.delete().where(user_tokens.c.id == token_id))
            return None
        return token


def _site(public_url: str) -> str:
    return public_url.rstrip("/")


async def mail_after_signup(db: Database, mailer: Mailer, public_url: str, user: Any) -> None:
    """Run in the background after an account is created with a pending address.

    When no account owns the address, mail it a verification link. When another account owns it,
    the new account never gets a link (it cannot confirm the address) and the owner is told that
    someone tried to sign up with it, with the way back into their own account.
    """
    address = user["pending_email"]
    if not address:
        return
    owner = await user_queries.by_email(db, address)
    site = _site(public_url)
    if owner is not None and owner["id"] != user["id"]:
        await mailer.send(
            owner["email"], "Someone tried to sign up to Vonix with your address",
            f"Hello {owner['username']},\n\nSomeone just tried to create a new Vonix account with this address. "
            f"It already belongs to your account, {owner['username']}, so the new account did not get it.\n\n"
            f"If it was you: sign in as {owner['username']} at {site}/signin, or reset your password at "
            f"{site}/reset-password.\nIf it wasn't you, ignore this mail: nothing changed on your account.\n")
        await audit.record(db, "user.signup_email_owned", target_type="user", target_id=owner["id"],
                           new_user_id=user["id"])
        return
    await send_verification(db, mailer, public_url, user["id"], user["username"], address)


async def resend_verification(db: Database, mailer: Mailer, public_url: str, user: Any) -> None:
    """Run in the background when a member asks for a new link: only for an address they may still
    confirm (pending, or a pre-0017 unconfirmed one), never to an address another account owns (its
    owner was told once, at sign-up), and at most MAX_LIVE_VERIFY_LINKS live links at a time, so
    the button cannot be used to flood a mailbox."""
    address = user["pending_email"] or (user["email"] if user["email_verified_at"] is None else None)
    if not address:
        return
    owner = await user_queries.by_email(db, address)
    if owner is not None and owner["id"] != user["id"]:
        return
    token = await MailedTokens(db).issue_within(user["id"], "verify", VERIFY_TTL, MAX_LIVE_VERIFY_LINKS)
    if token is not None:
        await _mail_verification(mailer, public_url, user["username"], address, token)


async def send_verification(db: Database, mailer: Mailer, public_url: str, user_id: int, username: str,
                            address: str) -> None:
    token = await MailedTokens(db).issue(user_id, "verify", VERIFY_TTL)
    await _mail_verification(mailer, public_url, username, address, token)


async def _mail_verification(mailer: Mailer, public_url: str, username: str, address: str, token: str) -> None:
    link = f"{_site(public_url)}/verify-email?token={token}"
    await mailer.send(address, "Confirm your Vonix email",
                      f"Hello {username},\n\nConfirm your email address:\n{link}\n\n"
                      "If you didn't sign up to Vonix, ignore this mail.\n")


async def mail_reset_if_owned(db: Database, mailer: Mailer, public_url: str, address: str, ttl_seconds: int) -> None:
    """Run in the background for every forgot-password request: a reset link goes only to an
    address an active account owns (never to a pending one); otherwise nothing is sent."""
    user = await user_queries.by_email(db, address)
    if user is None or user["status"] != "active" or not user["email"]:
        return
    token = await MailedTokens(db).issue(user["id"], "reset", ttl_seconds)
    link = f"{_site(public_url)}/reset-password?token={token}"
    minutes = ttl_seconds // 60
    await mailer.send(user["email"], "Reset your Vonix password",
                      f"Hello {user['username']},\n\nReset your password within {minutes} minutes:\n"
                      f"{link}\n\nIf you didn't ask for this, ignore this mail.\n")
    await audit.record(db, "password.reset_requested", target_type="user", target_id=user["id"])
