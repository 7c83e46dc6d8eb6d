"""Password hashing (argon2id) and the password policy.

Verification of an unknown account still runs one argon2 verification against a fixed dummy hash,
so response time does not tell whether an account exists.
"""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

COMMON_PASSWORDS = Path(__file__).parent / "data" / "common-passwords.txt"
MAX_LENGTH = 256


@cache
def _common() -> frozenset[str]:
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


class PasswordRejected(ValueError):
    """The password breaks the policy; `code` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Passwords:
    def __init__(self, min_length: int = 10) -> None:
        self.min_length = min_length
        self._hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
        self._dummy = self._hasher.hash("vonix-dummy-password-for-timing")

    def check_policy(self, password: str, *, username: str | None = None, email: str | None = None) -> None:
        if len(password) < self.min_length:
            raise PasswordRejected("password_too_short", f"Use at least {self.min_length} characters.")
        if len(password) > MAX_LENGTH:
            raise PasswordRejected("password_too_long", f"Use at most {MAX_LENGTH} characters.")
        lowered = password.lower()
        if lowered in _common():
            raise PasswordRejected("password_too_common", "That password is too common; choose another.")
        for personal in (username, (email or "").split("@")[0]):
            if personal and len(personal) >= 4 and personal.lower() in lowered:
                raise PasswordRejected("password_too_personal", "Don't include your username or email.")
        if len(set(password)) < 4:
            raise PasswordRejected("password_too_simple", "Use more varied characters.")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant-work check; an account without a password (or unknown) verifies a dummy."""
        target = stored_hash or self._dummy
        try:
            ok = await asyncio.to_thread(self._hasher.verify, target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return bool(ok) and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
