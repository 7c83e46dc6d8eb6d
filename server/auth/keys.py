"""Keys derived from SECRET_KEY: JWT signing keys with key ids, and the at-rest encryption key.

Derivation (HKDF with a purpose label) means one secret serves several uses without one use's
key revealing another's. `SECRET_KEY_PREVIOUS` stays valid for verification and decryption, so a
key rotation does not log everyone out or lose enrolled 2FA secrets.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import KeySet, OctKey

from server.settings import Settings


def _derive(secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"vonix", info=purpose.encode()).derive(
        secret.encode()
    )


def key_id(secret: str) -> str:
    return hashlib.sha256(_derive(secret, "kid")).hexdigest()[:12]


@dataclass(frozen=True)
class Keyring:
    signing_key: OctKey
    verification_keys: KeySet
    fernet: MultiFernet

    @property
    def kid(self) -> str:
        return str(self.signing_key.kid)

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        secrets_ = [settings.secret()]
        if settings.secret_key_previous is not None:
            secrets_.append(settings.secret_key_previous.get_secret_value())
        jwks = [OctKey.import_key(_derive(s, "jwt"), {"kid": key_id(s)}) for s in secrets_]
        fernets = [Fernet(base64.urlsafe_b64encode(_derive(s, "at-rest"))) for s in secrets_]
        return cls(signing_key=jwks[0], verification_keys=KeySet(list(jwks)), fernet=MultiFernet(fernets))

    def encrypt(self, plaintext: str) -> str:
        return self.fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self.fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None
