"""VAPID keys (RFC 8292): P-256, the private key as base64url of its 32-byte scalar (or PEM), the
public key as base64url of the uncompressed point (what `pushManager.subscribe` takes as
`applicationServerKey`). `vonix vapid-keys` prints a new pair.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class InvalidVapidKey(ValueError):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate() -> tuple[str, str]:
    """A new (public, private) pair, both base64url."""
    key = ec.generate_private_key(ec.SECP256R1())
    return public_key_of(key), b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def load_private(value: str) -> ec.EllipticCurvePrivateKey:
    """Parse a private key given as base64url raw scalar or as PEM."""
    value = value.strip()
    try:
        if value.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(value.encode(), password=None)
        else:
            raw = b64url_decode(value)
            if len(raw) != 32:
                raise InvalidVapidKey("must be the base64url 32-byte P-256 private key (or PEM)")
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except InvalidVapidKey:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidVapidKey(f"not a P-256 private key ({exc.__class__.__name__})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InvalidVapidKey("must be a P-256 (prime256v1) key")
    return key


def public_key_of(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(point)


def raw_private(key: ec.EllipticCurvePrivateKey) -> str:
    """The base64url raw scalar: the form pywebpush's `Vapid.from_string` accepts."""
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))
