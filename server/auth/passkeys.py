"""Passkeys (WebAuthn): register several per account, sign in with one alone, or use one as the
second factor instead of a TOTP code. The `webauthn` library (py_webauthn) does the cryptography
and the ceremony checks; this module decides what is stored, what is refused, and how.

Why it is built this way:
- Challenges are random, stored server-side in `webauthn_challenges` (the database every replica
  shares, in both backend modes), single use (taken with DELETE … RETURNING, so two replicas cannot
  both accept one answer) and short lived (WEBAUTHN_CHALLENGE_TTL). Each is bound to what asked
  for it: the member and session for a registration, the MFA ticket for a second factor.
- The origin in clientDataJSON and the RP ID hash in authenticatorData are checked against the
  settings (WEBAUTHN_ORIGINS, WEBAUTHN_RP_ID) here, before the library runs, so each refusal has
  its own code (`passkey_wrong_origin`, `passkey_wrong_rp_id`) — a phishing page relaying an
  assertion from another origin is refused by name.
- Signature counters: the library verifies the signature with the counter check left to us
  (it is told the stored counter is 0), because a counter that does not grow only means a cloned
  authenticator when the signature is genuine. Then, when either counter is non-zero, the new one
  must be greater than the stored one; the stored counter moves in one conditional UPDATE, so two
  concurrent assertions cannot both pass with the same counter. A regression is refused
  (`passkey_cloned`) and written to the audit log.
- Backup flags (WebAuthn L3 §6.1.3): BE is fixed when the credential is made; an assertion whose
  BE differs is refused. BS may change (a passkey gets synced later) and is stored each time.
- A passkey alone signs in only with user verification (PIN or biometric on the device): that is
  two factors in one gesture, so the session counts as MFA. As a second factor after the password,
  user presence is enough.
- Failed assertions count towards the same lockouts as wrong passwords (per account and per IP).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    bytes_to_base64url,
    options_to_json_dict,
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    ClientDataType,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from server.auth import audit
from server.auth.keys import _derive
from server.auth.service import AccountLocked, AuthService
from server.auth.sessions import ClientInfo
from server.db.errors import UniqueViolation
from server.db.queries import users as user_queries
from server.db.tables_passkeys import passkeys, webauthn_challenges
from server.db.types import utcnow
from server.errors import AppError, Conflict, Forbidden, NotFound

MAX_PER_ACCOUNT = 20
CEREMONY_TIMEOUT_MS = 120_000  # a hint to the browser; the server's own limit is the challenge TTL
_KNOWN_TRANSPORTS = {t.value: t for t in AuthenticatorTransport}


class PasskeyRefused(AppError):
    """A passkey ceremony was refused; `code` says why (listed in docs/operations.md, "Passkeys")."""

    status, code, message = 401, "passkey_invalid", "The passkey's answer could not be verified."


def refused(code: str, message: str, *, status: int = 401) -> PasskeyRefused:
    return PasskeyRefused(message, code=code, status=status)


def challenge_invalid() -> PasskeyRefused:
    return refused("passkey_challenge_invalid", "This passkey request expired or was already used; try again.",
                   status=400)


@dataclass(frozen=True)
class Ceremony:
    """Options for the browser plus the id of the stored challenge the answer must name."""

    challenge_id: str
    options: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"challenge_id": self.challenge_id, "publicKey": self.options}


@dataclass(frozen=True)
class Verified:
    user: Any
    passkey_id: int
    user_verified: bool


class Challenges:
    """Single-use, short-lived, bound challenges in the shared database."""

    def __init__(self, db: Any, ttl: int) -> None:
        self.db = db
        self.ttl = ttl

    async def issue(self, purpose: str, *, user_id: int | None, binding: str | None) -> tuple[str, bytes]:
        now = utcnow()
        # Expired ones go on the next issue: no table grows without bound, no sweeper needed.
        await self.db.execute("challenges.sweep", webauthn_challenges.delete().where(
            webauthn_challenges.c.expires_at < now))
        challenge_id, challenge = secrets.token_hex(16), secrets.token_bytes(32)
        await self.db.execute("challenges.insert", webauthn_challenges.insert().values(
            id=challenge_id, purpose=purpose, user_id=user_id, binding=binding, challenge=challenge,
            created_at=now, expires_at=now + timedelta(seconds=self.ttl)))
        return challenge_id, challenge

    async def take(self, challenge_id: str, purpose: str, *, user_id: int | None = None,
                   binding: str | None = None) -> bytes:
        """The challenge, deleted in the same statement (single use); refused when it is unknown,
        used, expired, or bound to another member, session or ticket."""
        row = await self.db.fetch_one("challenges.take", webauthn_challenges.delete().where(
            webauthn_challenges.c.id == challenge_id, webauthn_challenges.c.purpose == purpose,
        ).returning(webauthn_challenges.c.challenge, webauthn_challenges.c.user_id,
                    webauthn_challenges.c.binding, webauthn_challenges.c.expires_at))
        if row is None or row["expires_at"] <= utcnow():
            raise challenge_invalid()
        if row["user_id"] != user_id or not hmac.compare_digest(row["binding"] or "", binding or ""):
            raise challenge_invalid()
        return bytes(row["challenge"])


def ticket_binding(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def _transports(value: str | None) -> list[AuthenticatorTransport] | None:
    found = [_KNOWN_TRANSPORTS[t] for t in (value or "").split(",") if t in _KNOWN_TRANSPORTS]
    return found or None


def public(row: Any) -> dict[str, Any]:
    """A passkey as its owner sees it in settings (never the key or the handle)."""
    return {"id": row["id"], "name": row["name"], "created_at": row["created_at"],
            "last_used_at": row["last_used_at"], "backup_eligible": bool(row["backup_eligible"]),
            "backed_up": bool(row["backup_state"]),
            "transports": [t for t in (row["transports"] or "").split(",") if t]}


class Passkeys:
    def __init__(self, auth: AuthService) -> None:
        self.auth = auth
        self.db = auth.db
        self.settings = auth.settings
        self.challenges = Challenges(auth.db, auth.settings.webauthn_challenge_ttl)
        self._handle_key = _derive(auth.settings.secret(), "webauthn-user-handle")

    # --- reading -----------------------------------------------------------------------------
    async def list_for(self, user_id: int) -> list[Any]:
        return await self.db.fetch_all("passkeys.list", sa.select(passkeys).where(
            passkeys.c.user_id == user_id).order_by(passkeys.c.id))

    async def _user_handle(self, user_id: int) -> bytes:
        """The opaque WebAuthn user id: the one already stored for this member (so one member is one
        account on every authenticator, even across a SECRET_KEY rotation), else derived from it."""
        stored = await self.db.fetch_val("passkeys.user_handle", sa.select(passkeys.c.user_handle).where(
            passkeys.c.user_id == user_id).limit(1))
        if stored is not None:
            return bytes(stored)
        return hmac.new(self._handle_key, str(user_id).encode(), hashlib.sha256).digest()

    def _descriptors(self, rows: list[Any]) -> list[PublicKeyCredentialDescriptor]:
        return [PublicKeyCredentialDescriptor(id=bytes(r["credential_id"]), transports=_transports(r["transports"]))
                for r in rows]

    # --- registration ------------------------------------------------------------------------
    async def registration_options(self, user: Any, session_id: str) -> Ceremony:
        existing = await self.list_for(user["id"])
        if len(existing) >= MAX_PER_ACCOUNT:
            raise Conflict(f"An account can have at most {MAX_PER_ACCOUNT} passkeys; remove one first.",
                           code="passkey_limit")
        challenge_id, challenge = await self.challenges.issue("register", user_id=user["id"], binding=session_id)
        options = generate_registration_options(
            rp_id=self.settings.webauthn_rp_id, rp_name=self.settings.webauthn_rp_name,
            user_name=user["username"], user_id=await self._user_handle(user["id"]),
            user_display_name=user["display_name"] or user["username"], challenge=challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,  # discoverable: sign in with no username
                user_verification=UserVerificationRequirement.PREFERRED),
            exclude_credentials=self._descriptors(existing))  # the same authenticator twice is refused
        return Ceremony(challenge_id, options_to_json_dict(options))

    async def register(self, user: Any, session_id: str, challenge_id: str, credential: dict[str, Any],
                       name: str) -> Any:
        challenge = await self.challenges.take(challenge_id, "register", user_id=user["id"], binding=session_id)
        try:
            parsed = parse_registration_credential_json(credential)
        except WebAuthnException:
            raise refused("passkey_invalid", "The passkey's answer is malformed.", status=400) from None
        self._check_registration(parsed, challenge)
        try:
            verified = verify_registration_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=self.settings.webauthn_rp_id,
                expected_origin=self.settings.webauthn_origins)
        except WebAuthnException as exc:
            raise refused("passkey_invalid", f"The passkey could not be verified: {exc}", status=400) from None
        if len(await self.list_for(user["id"])) >= MAX_PER_ACCOUNT:
            raise Conflict(f"An account can have at most {MAX_PER_ACCOUNT} passkeys.", code="passkey_limit")
        transports = ",".join(t.value for t in (parsed.response.transports or []))[:128] or None
        now = utcnow()
        try:
            passkey_id = await self.db.fetch_val("passkeys.insert", passkeys.insert().values(
                user_id=user["id"], credential_id=verified.credential_id,
                public_key=verified.credential_public_key, user_handle=await self._user_handle(user["id"]),
                sign_count=verified.sign_count, transports=transports,
                backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
                backup_state=verified.credential_backed_up, aaguid=verified.aaguid, name=name,
                created_at=now).returning(passkeys.c.id))
        except UniqueViolation:
            raise Conflict("This passkey is already registered.", code="passkey_already_registered") from None
        await audit.record(self.db, "passkey.added", actor_id=user["id"], target_type="passkey",
                           target_id=passkey_id, name=name)
        return await self.db.fetch_one("passkeys.by_id", sa.select(passkeys).where(passkeys.c.id == passkey_id))

    def _check_registration(self, parsed: RegistrationCredential, challenge: bytes) -> None:
        """Origin and RP ID first, with their own codes (the library would only say 'invalid')."""
        try:
            client = parse_client_data_json(bytes(parsed.response.client_data_json))
            auth_data = parse_attestation_object(bytes(parsed.response.attestation_object)).auth_data
        except WebAuthnException:
            raise refused("passkey_invalid", "The passkey's answer is malformed.", status=400) from None
        if client.type != ClientDataType.WEBAUTHN_CREATE or not hmac.compare_digest(client.challenge, challenge):
            raise challenge_invalid()
        self._check_origin(client.origin, bool(client.cross_origin), status=400)
        self._check_rp_id(auth_data.rp_id_hash, status=400)

    def _check_origin(self, origin: str, cross_origin: bool, *, status: int) -> None:
        if cross_origin or origin not in self.settings.webauthn_origins:
            raise refused("passkey_wrong_origin",
                          f"This passkey answer was made on {origin[:100]}, not on this site.", status=status)

    def _check_rp_id(self, rp_id_hash: bytes, *, status: int) -> None:
        expected = hashlib.sha256(self.settings.webauthn_rp_id.encode()).digest()
        if not hmac.compare_digest(rp_id_hash, expected):
            raise refused("passkey_wrong_rp_id", "This passkey belongs to another site.", status=status)

    # --- managing ----------------------------------------------------------------------------
    async def rename(self, user_id: int, passkey_id: int, name: str) -> Any:
        row = await self.db.fetch_one("passkeys.rename", passkeys.update().where(
            passkeys.c.id == passkey_id, passkeys.c.user_id == user_id).values(name=name).returning(*passkeys.c))
        if row is None:
            raise NotFound("No such passkey.", code="passkey_not_found")
        return row

    async def remove(self, user_id: int, passkey_id: int, *, ip: str | None) -> None:
        gone = await self.db.fetch_val("passkeys.delete", passkeys.delete().where(
            passkeys.c.id == passkey_id, passkeys.c.user_id == user_id).returning(passkeys.c.id))
        if gone is None:
            raise NotFound("No such passkey.", code="passkey_not_found")
        await audit.record(self.db, "passkey.removed", actor_id=user_id, target_type="passkey",
                           target_id=passkey_id, ip=ip)

    # --- sign-in with a passkey alone (discoverable credentials) ------------------------------
    async def login_options(self) -> Ceremony:
        challenge_id, challenge = await self.challenges.issue("login", user_id=None, binding=None)
        options = generate_authentication_options(
            rp_id=self.settings.webauthn_rp_id, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
            user_verification=UserVerificationRequirement.REQUIRED)  # no allowCredentials: discoverable
        return Ceremony(challenge_id, options_to_json_dict(options))

    async def login(self, challenge_id: str, credential: dict[str, Any], client: ClientInfo) -> Verified:
        challenge = await self.challenges.take(challenge_id, "login")
        parsed = _parse_assertion(credential)
        row = await self._by_credential(parsed.raw_id)
        lockout = self.auth.lockout
        if row is None:
            key = f"passkey:{bytes_to_base64url(parsed.raw_id)[:200]}"
            lock = await lockout.active(None, key, client.ip)
            if lock is not None:
                raise AccountLocked(headers={"Retry-After": str(lock.retry_after)})
            await lockout.record(None, key, client.ip, success=False)
            raise refused("passkey_unknown", "This passkey is not registered here (it may have been removed).")
        user_id, key = row["user_id"], f"passkey:{row['user_id']}"
        lock = await lockout.active(user_id, key, client.ip)
        if lock is not None:
            raise AccountLocked(headers={"Retry-After": str(lock.retry_after)})
        try:
            handle = parsed.response.user_handle
            if handle is None or not hmac.compare_digest(bytes(handle), bytes(row["user_handle"])):
                raise refused("passkey_invalid", "The passkey's account does not match.")
            user_verified = await self._verify_assertion(row, parsed, challenge, require_uv=True, ip=client.ip)
            user = await self._active_user(user_id)
        except AppError:
            new_lock = await lockout.record(user_id, key, client.ip, success=False)
            if new_lock is not None:
                await audit.record(self.db, "user.locked", target_type="user", target_id=user_id, ip=client.ip)
            raise
        await lockout.record(user_id, key, client.ip, success=True)
        return Verified(user, row["id"], user_verified)

    async def _active_user(self, user_id: int) -> Any:
        user = await user_queries.by_id(self.db, user_id)
        if user is not None and user["status"] == "suspended" and self.auth.unsuspend_if_clear is not None \
                and await self.auth.unsuspend_if_clear(user_id):  # a timed site ban ran out
            user = await user_queries.by_id(self.db, user_id)
        if user is None or user["status"] != "active" or user["role"] == "bot":
            raise refused("passkey_invalid", "This account cannot sign in.")
        if self.settings.require_verified_email and user_queries.email_unconfirmed(user):  # as the password login
            raise Forbidden("Confirm your email address first; we sent you a link.", code="email_unverified")
        return user

    # --- a passkey as the second factor (instead of the TOTP code) ---------------------------
    async def mfa_options(self, user: Any, ticket: str) -> Ceremony:
        rows = await self.list_for(user["id"])
        if not rows:
            raise NotFound("This account has no passkey; use the code from your app.", code="no_passkeys")
        challenge_id, challenge = await self.challenges.issue("mfa", user_id=user["id"],
                                                              binding=ticket_binding(ticket))
        options = generate_authentication_options(
            rp_id=self.settings.webauthn_rp_id, challenge=challenge, timeout=CEREMONY_TIMEOUT_MS,
            allow_credentials=self._descriptors(rows), user_verification=UserVerificationRequirement.PREFERRED)
        return Ceremony(challenge_id, options_to_json_dict(options))

    async def second_factor(self, user: Any, ticket: str, challenge_id: str, credential: dict[str, Any],
                            ip: str | None) -> Verified:
        """Check a passkey answer for the MFA step; the caller holds the MFA lockout."""
        challenge = await self.challenges.take(challenge_id, "mfa", user_id=user["id"],
                                               binding=ticket_binding(ticket))
        parsed = _parse_assertion(credential)
        row = await self._by_credential(parsed.raw_id)
        if row is None or row["user_id"] != user["id"]:
            raise refused("passkey_unknown", "This passkey is not one of this account's passkeys.")
        user_verified = await self._verify_assertion(row, parsed, challenge, require_uv=False, ip=ip)
        return Verified(user, row["id"], user_verified)

    # --- the assertion checks shared by both -------------------------------------------------
    async def _by_credential(self, credential_id: bytes) -> Any:
        return await self.db.fetch_one("passkeys.by_credential_id", sa.select(passkeys).where(
            passkeys.c.credential_id == bytes(credential_id)))

    async def _verify_assertion(self, row: Any, parsed: AuthenticationCredential, challenge: bytes, *,
                                require_uv: bool, ip: str | None) -> bool:
        try:
            client = parse_client_data_json(bytes(parsed.response.client_data_json))
            auth_data = parse_authenticator_data(bytes(parsed.response.authenticator_data))
        except WebAuthnException:
            raise refused("passkey_invalid", "The passkey's answer is malformed.") from None
        if client.type != ClientDataType.WEBAUTHN_GET or not hmac.compare_digest(client.challenge, challenge):
            raise challenge_invalid()
        self._check_origin(client.origin, bool(client.cross_origin), status=401)
        self._check_rp_id(auth_data.rp_id_hash, status=401)
        if require_uv and not auth_data.flags.uv:
            raise refused("passkey_user_verification_required",
                          "Signing in with a passkey alone needs your device's PIN, fingerprint or face.")
        try:
            # The counter is checked below, after the signature: only a genuine signature with a
            # counter that went backwards is a clone signal.
            verified = verify_authentication_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=self.settings.webauthn_rp_id,
                expected_origin=self.settings.webauthn_origins, credential_public_key=bytes(row["public_key"]),
                credential_current_sign_count=0, require_user_verification=require_uv)
        except WebAuthnException:
            raise refused("passkey_invalid", "The passkey's signature could not be verified.") from None
        if bool(auth_data.flags.be) != bool(row["backup_eligible"]):
            await audit.record(self.db, "passkey.backup_eligibility_changed", actor_id=row["user_id"],
                               target_type="passkey", target_id=row["id"], ip=ip)
            raise refused("passkey_invalid", "This passkey's backup eligibility changed; it cannot be trusted.")
        new, stored = verified.new_sign_count, int(row["sign_count"])
        counter_ok = (passkeys.c.sign_count < new) if new > 0 else (passkeys.c.sign_count == 0)
        claimed = await self.db.fetch_val("passkeys.used", passkeys.update().where(
            passkeys.c.id == row["id"], counter_ok,
        ).values(sign_count=new, backup_state=verified.credential_backed_up,
                 last_used_at=utcnow()).returning(passkeys.c.id))
        if claimed is None:  # the counter did not grow (also when a concurrent use won the race)
            await audit.record(self.db, "passkey.cloned", actor_id=None, target_type="passkey",
                               target_id=row["id"], ip=ip, user_id=row["user_id"], stored_count=stored,
                               presented_count=new)
            raise refused("passkey_cloned", "This passkey's signature counter went backwards: the authenticator "
                          "may have been copied. It was refused; remove it in settings if you did not expect this.")
        return bool(verified.user_verified)


def _parse_assertion(credential: dict[str, Any]) -> AuthenticationCredential:
    try:
        return parse_authentication_credential_json(credential)
    except WebAuthnException:
        raise refused("passkey_invalid", "The passkey's answer is malformed.", status=400) from None
