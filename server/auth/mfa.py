"""TOTP two-factor authentication and single-use recovery codes.

The TOTP secret is encrypted at rest with a key derived from SECRET_KEY. A code is accepted once:
the time step it matched is stored and only later steps pass (replay protection). Recovery codes
are random, shown once, stored as keyed hashes (HMAC with a server-side key, so a database leak
alone cannot brute-force them) and burnt on use.

A refused code comes with a reason (`CodeCheck`) so a member learns what to do: wait for the next
code (the one typed was just used), fix the device's clock (the code belongs to a time step a few
minutes off), or retype. Reasons reveal nothing an attacker can use: a code only ever passes for
the current time step (+/- one), and the login step stays behind the same lockout.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import time
from enum import StrEnum
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


SKEW_STEPS = 10  # how far off (in 30 s steps) a matching code still earns a clock hint


class CodeCheck(StrEnum):
    """What checking a 2FA code found; `OK` is the only pass."""

    OK = "ok"
    WRONG = "wrong_code"
    REUSED = "code_reused"  # matched the step already used (the code that just signed in/enrolled)
    EXPIRED = "code_expired"  # matched a step a few minutes back: an old code, or a clock behind
    CLOCK_AHEAD = "clock_ahead"  # matched a future step: the device's clock runs ahead
    MALFORMED = "malformed_code"  # neither six digits nor a recovery code's shape
    RECOVERY_USED = "recovery_code_used"


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

    async def check_totp(self, user: Any, code: str) -> CodeCheck:
        """OK once per matching time step (now +/- one); otherwise why the code was refused."""
        secret = self._secret(user)
        code = code.strip().replace(" ", "")
        if not (code.isdigit() and len(code) == 6):
            return CodeCheck.MALFORMED
        if secret is None:
            return CodeCheck.WRONG
        totp = pyotp.TOTP(secret)
        now_step = int(time.time()) // totp.interval
        for step in (now_step - 1, now_step, now_step + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                claimed = await self.db.fetch_val("mfa.claim_step", users.update().where(
                    users.c.id == user["id"],
                    sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                ).values(totp_last_step=step).returning(users.c.id))
                return CodeCheck.OK if claimed is not None else CodeCheck.REUSED
        for distance in range(2, SKEW_STEPS + 1):
            if hmac.compare_digest(totp.generate_otp(now_step - distance), code):
                return CodeCheck.EXPIRED
            if hmac.compare_digest(totp.generate_otp(now_step + distance), code):
                return CodeCheck.CLOCK_AHEAD
        return CodeCheck.WRONG

    async def verify_totp(self, user: Any, code: str) -> bool:
        """True once per matching time step; a replayed code fails."""
        return await self.check_totp(user, code) is CodeCheck.OK

    async def use_recovery_code(self, user_id: int, code: str) -> bool:
        used = await self.db.fetch_val("mfa.use_recovery", recovery_codes.update().where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.code_hash == self._hash_recovery(code),
            recovery_codes.c.used_at.is_(None),
        ).values(used_at=utcnow()).returning(recovery_codes.c.id))
        return used is not None

    async def check_recovery_code(self, user_id: int, code: str) -> CodeCheck:
        """Burn a recovery code (OK), or say it was burnt already, or that it is not one of ours."""
        if len("".join(ch for ch in code if ch.isalnum())) != 10:
            return CodeCheck.MALFORMED
        if await self.use_recovery_code(user_id, code):
            return CodeCheck.OK
        burnt = await self.db.fetch_val("mfa.recovery_used", sa.select(recovery_codes.c.id).where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.code_hash == self._hash_recovery(code)))
        return CodeCheck.RECOVERY_USED if burnt is not None else CodeCheck.WRONG

    async def check(self, user: Any, code: str) -> CodeCheck:
        """A TOTP code (6 digits) or a recovery code (xxxxx-xxxxx), with the reason on refusal."""
        if code.strip().replace(" ", "").isdigit():
            return await self.check_totp(user, code)
        return await self.check_recovery_code(user["id"], code)

    async def verify(self, user: Any, code: str) -> bool:
        """A TOTP code (6 digits) or a recovery code (xxxxx-xxxxx)."""
        return await self.check(user, code) is CodeCheck.OK

    async def confirm(self, user: Any, code: str) -> tuple[CodeCheck, list[str] | None]:
        """Enable 2FA if the code matches the pending secret: (OK, fresh recovery codes) or (reason, None)."""
        if user["totp_enabled_at"] is not None:
            return CodeCheck.WRONG, None
        check = await self.check_totp(user, code)
        if check is not CodeCheck.OK:
            return check, None
        codes = [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        now = utcnow()
        async with self.db.transaction():
            await self.db.execute("mfa.enable", users.update().where(users.c.id == user["id"]).values(
                totp_enabled_at=now, updated_at=now))
            await self.db.execute("mfa.clear_recovery", recovery_codes.delete().where(
                recovery_codes.c.user_id == user["id"]))
            await self.db.execute_many("mfa.insert_recovery", recovery_codes.insert(), [
                {"user_id": user["id"], "code_hash": self._hash_recovery(c), "created_at": now} for c in codes])
        return CodeCheck.OK, codes

    async def disable(self, user_id: int) -> None:
        async with self.db.transaction():
            await self.db.execute("mfa.disable", users.update().where(users.c.id == user_id).values(
                totp_secret=None, totp_enabled_at=None, totp_last_step=None, updated_at=utcnow()))
            await self.db.execute("mfa.clear_recovery", recovery_codes.delete().where(
                recovery_codes.c.user_id == user_id))
