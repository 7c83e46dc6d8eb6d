"""TOTP two-factor authentication and single-use recovery codes.

The TOTP secret is encrypted at rest with a key derived from SECRET_KEY. A code is accepted once:
the time step it matched is stored and only later steps pass (replay protection). Recovery codes
are random, shown once, stored as keyed hashes (HMAC with a server-side key, so a database leak
alone cannot brute-force them) and burnt on use.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import time
from typing import Any

import pyotp
import segno
import sqlalchemy as sa

from server.auth.keys import Keyring, _derive
from server.db.database import Database
from server.db.tables import recovery_codes, users
from server.db.types import utcnow

ISSUER = "Vonix"
RECOVERY_CODE_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes (0/o, 1/l/i)


def _recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def normalise_recovery(code: str) -> str:
    compact = "".join(ch for ch in code.lower() if ch.isalnum())
    return f"{compact[:5]}-{compact[5:]}"


class Mfa:
    def __init__(self, db: Database, keyring: Keyring, secret: str) -> None:
        self.db = db
        self.keyring = keyring
        self._recovery_key = _derive(secret, "recovery-codes")

    def _hash_recovery(self, code: str) -> str:
        return hmac.new(self._recovery_key, normalise_recovery(code).encode(), hashlib.sha256).hexdigest()

    async def enroll(self, user: Any) -> dict[str, str]:
        secret = pyotp.random_base32()
        await self.db.execute("mfa.enroll", users.update().where(users.c.id == user["id"]).values(
            totp_secret=self.keyring.encrypt(secret), totp_last_step=None, updated_at=utcnow()))
        uri = pyotp.TOTP(secret).provisioning_uri(name=user["username"], issuer_name=ISSUER)
        buffer = io.BytesIO()
        segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False, svgns=True)
        return {"secret": secret, "otpauth_uri": uri, "qr_svg": buffer.getvalue().decode()}

    def _secret(self, user: Any) -> str | None:
        return self.keyring.decrypt(user["totp_secret"]) if user["totp_secret"] else None

    async def verify_totp(self, user: Any, code: str) -> bool:
        """True once per matching time step; a replayed code fails."""
        secret = self._secret(user)
        code = code.strip().replace(" ", "")
        if secret is None or not (code.isdigit() and len(code) == 6):
            return False
        totp = pyotp.TOTP(secret)
        now_step = int(time.time()) // totp.interval
        for step in (now_step - 1, now_step, now_step + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                claimed = await self.db.fetch_val("mfa.claim_step", users.update().where(
                    users.c.id == user["id"],
                    sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                ).values(totp_last_step=step).returning(users.c.id))
                return claimed is not None
        return False

    async def use_recovery_code(self, user_id: int, code: str) -> bool:
        used = await self.db.fetch_val("mfa.use_recovery", recovery_codes.update().where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.code_hash == self._hash_recovery(code),
            recovery_codes.c.used_at.is_(None),
        ).values(used_at=utcnow()).returning(recovery_codes.c.id))
        return used is not None

    async def verify(self, user: Any, code: str) -> bool:
        """A TOTP code (6 digits) or a recovery code (xxxxx-xxxxx)."""
        if code.strip().isdigit():
            return await self.verify_totp(user, code)
        return await self.use_recovery_code(user["id"], code)

    async def confirm(self, user: Any, code: str) -> list[str] | None:
        """Enable 2FA if the code matches the pending secret; returns fresh recovery codes."""
        if user["totp_enabled_at"] is not None or not await self.verify_totp(user, code):
            return None
        codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        now = utcnow()
        async with self.db.transaction():
            await self.db.execute("mfa.enable", users.update().where(users.c.id == user["id"]).values(
                totp_enabled_at=now, updated_at=now))
            await self.db.execute("mfa.clear_recovery", recovery_codes.delete().where(
                recovery_codes.c.user_id == user["id"]))
            await self.db.execute_many("mfa.insert_recovery", recovery_codes.insert(), [
                {"user_id": user["id"], "code_hash": self._hash_recovery(c), "created_at": now} for c in codes])
        return codes

    async def disable(self, user_id: int) -> None:
        async with self.db.transaction():
            await self.db.execute("mfa.disable", users.update().where(users.c.id == user_id).values(
                totp_secret=None, totp_enabled_at=None, totp_last_step=None, updated_at=utcnow()))
            await self.db.execute("mfa.clear_recovery", recovery_codes.delete().where(
                recovery_codes.c.user_id == user_id))
