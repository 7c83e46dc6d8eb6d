"""Passkeys (WebAuthn credentials) and the short-lived challenges of their ceremonies (issue 20).

- `passkeys`: one row per registered credential; several per account, each with a name the member
  chose. `credential_id` is the raw credential id (bytes; base64url on the wire) and is unique
  across accounts: a sign-in finds its account through it (discoverable credentials).
  `user_handle` is the opaque WebAuthn user id the authenticator stores with the credential; a
  sign-in's `userHandle` must equal it. `sign_count` is the last signature counter seen (a
  counter that fails to grow means a cloned authenticator); `backup_eligible` is fixed at
  registration, `backup_state` follows each assertion.
- `webauthn_challenges`: each options call stores its random challenge here, single use and short
  lived, bound to what asked for it (the session for a registration, the MFA ticket for a second
  factor), so any replica can check the answer (the database is what every replica shares in both
  backend modes).
"""

from __future__ import annotations

import sqlalchemy as sa

from server.db.tables import _created, _id, _user_fk, metadata
from server.db.types import UtcDateTime

passkeys = sa.Table(
    "passkeys",
    metadata,
    _id(),
    _user_fk(),
    sa.Column("credential_id", sa.LargeBinary(), nullable=False),
    sa.Column("public_key", sa.LargeBinary(), nullable=False),  # COSE_Key bytes as registered
    sa.Column("user_handle", sa.LargeBinary(), nullable=False),
    sa.Column("sign_count", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("transports", sa.String(128), nullable=True),  # comma-separated hints: internal,hybrid,usb
    sa.Column("backup_eligible", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("backup_state", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("aaguid", sa.String(36), nullable=True),  # the authenticator model, when it says
    sa.Column("name", sa.String(64), nullable=False),
    _created(),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("credential_id"),  # serves passkeys.by_credential_id (every sign-in)
)
sa.Index("ix_passkeys_user_id", passkeys.c.user_id)  # serves passkeys.list and the cascade

webauthn_challenges = sa.Table(
    "webauthn_challenges",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # random hex: what the client sends back
    sa.Column("purpose", sa.String(16), nullable=False),  # register | login | mfa
    _user_fk(nullable=True),  # NULL for a discoverable sign-in (nobody is known yet)
    sa.Column("binding", sa.String(64), nullable=True),  # session id, or SHA-256 of the MFA ticket
    sa.Column("challenge", sa.LargeBinary(), nullable=False),
    _created(),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)
sa.Index("ix_webauthn_challenges_expires_at", webauthn_challenges.c.expires_at)  # serves challenges.sweep
sa.Index("ix_webauthn_challenges_user_id", webauthn_challenges.c.user_id)  # serves the cascade
