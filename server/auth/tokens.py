"""Access JWTs (short-lived, key id in the header) and opaque secrets stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from server.auth.keys import Keyring

ALGORITHM = "HS256"
ISSUER = "vonix"


class InvalidToken(Exception):
    """Expired, tampered, of the wrong purpose, or signed by an unknown key."""


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def hash_secret(value: str) -> str:
    """SHA-256 is right for high-entropy random tokens (not for passwords): fast lookups by hash."""
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    session_id: str
    role: str
    expires_at: int
    token_id: str


class TokenSigner:
    def __init__(self, keyring: Keyring, access_ttl: int) -> None:
        self.keyring = keyring
        self.access_ttl = access_ttl

    def _encode(self, claims: dict[str, Any]) -> str:
        header = {"alg": ALGORITHM, "kid": self.keyring.kid}
        return jwt.encode(header, claims, self.keyring.signing_key)

    def _decode(self, token: str, purpose: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, self.keyring.verification_keys, algorithms=[ALGORITHM])
            jwt.JWTClaimsRegistry(
                exp={"essential": True}, iss={"essential": True, "value": ISSUER},
                typ={"essential": True, "value": purpose},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise InvalidToken(exc.__class__.__name__) from None
        return dict(decoded.claims)

    def issue_access(self, user_id: int, session_id: str, role: str, ttl: int | None = None) -> tuple[str, int]:
        now = int(time.time())
        expires = now + (ttl or self.access_ttl)
        claims = {"iss": ISSUER, "typ": "access", "sub": str(user_id), "sid": session_id, "role": role,
                  "iat": now, "exp": expires, "jti": uuid.uuid4().hex}
        return self._encode(claims), expires

    def verify_access(self, token: str) -> AccessClaims:
        claims = self._decode(token, "access")
        try:
            return AccessClaims(int(claims["sub"]), str(claims["sid"]), str(claims["role"]),
                                int(claims["exp"]), str(claims["jti"]))
        except (KeyError, ValueError):
            raise InvalidToken("malformed claims") from None

    def issue_ticket(self, purpose: str, subject: str, ttl: int, **extra: Any) -> str:
        """A short-lived signed ticket (MFA step, OAuth state, linking) bound to one purpose."""
        now = int(time.time())
        claims = {"iss": ISSUER, "typ": purpose, "sub": subject, "iat": now, "exp": now + ttl,
                  "jti": uuid.uuid4().hex, **extra}
        return self._encode(claims)

    def verify_ticket(self, token: str, purpose: str) -> dict[str, Any]:
        return self._decode(token, purpose)
