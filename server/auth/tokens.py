"""Access JWTs (short-lived, key id in the header) and opaque secrets stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
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


VERIFIED_ACCESS_TOKENS = 4096  # recently verified access tokens kept, least recently used dropped


class TokenSigner:
    def __init__(self, keyring: Keyring, access_ttl: int, *, verified_cache: int = VERIFIED_ACCESS_TOKENS) -> None:
        self.keyring = keyring
        self.access_ttl = access_ttl
        # After a deploy every client reconnects presenting the same access token it used a minute
        # ago, and a member's tabs share one: checking an HMAC signature and the claims again costs
        # more than the rest of the websocket's admission. A token string verified once stays valid
        # until its `exp` (the keyring does not change while the process runs); revocation is the
        # session check's job, which still runs on every use.
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self._verified_max = verified_cache

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
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > int(time.time()):  # joserfc's rule: expired once now >= exp
                self._verified.move_to_end(token)
                return known
            del self._verified[token]
            raise InvalidToken("ExpiredTokenError")
        claims = self._decode(token, "access")
        try:
            verified = AccessClaims(int(claims["sub"]), str(claims["sid"]), str(claims["role"]),
                                    int(claims["exp"]), str(claims["jti"]))
        except (KeyError, ValueError):
            raise InvalidToken("malformed claims") from None
        if self._verified_max:
            self._verified[token] = verified
            if len(self._verified) > self._verified_max:
                self._verified.popitem(last=False)
        return verified

    def issue_ticket(self, purpose: str, subject: str, ttl: int, **extra: Any) -> str:
        """A short-lived signed ticket (MFA step, OAuth state, linking) bound to one purpose."""
        now = int(time.time())
        claims = {"iss": ISSUER, "typ": purpose, "sub": subject, "iat": now, "exp": now + ttl,
                  "jti": uuid.uuid4().hex, **extra}
        return self._encode(claims)

    def verify_ticket(self, token: str, purpose: str) -> dict[str, Any]:
        return self._decode(token, purpose)
