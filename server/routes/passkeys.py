"""`/api/auth/passkeys*` and the passkey sign-in steps (issue 20; server/auth/passkeys.py says why).

- Settings (signed-in members, not bots): list, register (options, then the browser's answer),
  rename, remove.
- `POST /api/auth/login/passkey/options` + `POST /api/auth/login/passkey`: sign in with a passkey
  alone (discoverable credentials: no username typed).
- `POST /api/auth/login/mfa/passkey/options` + `POST /api/auth/login/mfa/passkey`: the 2FA step
  with a passkey instead of the TOTP code; it takes the same `mfa_ticket` that `/api/auth/login`
  answered and counts failures in the same lockout as the TOTP step.

The sign-in paths start with `/api/auth/login` so the PWA's API client never answers their 401s
with a token refresh. Every body is validated by the models below; every refusal is coded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.auth.passkeys import Passkeys, public
from server.auth.principal import principal_of, requires
from server.auth.service import AccountLocked, auth_of, client_info
from server.db.queries import users as user_queries
from server.errors import AppError, BadRequest, Unauthorized
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Closed, Open, When
from server.routes.auth import Session, _tokens_response

B64URL = r"^[A-Za-z0-9_-]*={0,2}$"
CHALLENGE_ID = r"^[0-9a-f]{32}$"


class _Loose(BaseModel):
    # Browsers add fields over time (authenticatorAttachment, publicKeyAlgorithm, …): ignore them.
    model_config = ConfigDict(extra="ignore")


class AttestationResponse(_Loose):
    clientDataJSON: str = Field(min_length=1, max_length=4096, pattern=B64URL)
    attestationObject: str = Field(min_length=1, max_length=65536, pattern=B64URL)
    transports: list[str] = Field(default_factory=list, max_length=10)


class RegistrationCredentialBody(_Loose):
    id: str = Field(min_length=1, max_length=1400, pattern=B64URL)
    rawId: str = Field(min_length=1, max_length=1400, pattern=B64URL)
    type: Literal["public-key"]
    response: AttestationResponse


class AssertionResponse(_Loose):
    clientDataJSON: str = Field(min_length=1, max_length=4096, pattern=B64URL)
    authenticatorData: str = Field(min_length=1, max_length=4096, pattern=B64URL)
    signature: str = Field(min_length=1, max_length=2048, pattern=B64URL)
    userHandle: str | None = Field(default=None, max_length=128, pattern=B64URL)


class AssertionCredentialBody(_Loose):
    id: str = Field(min_length=1, max_length=1400, pattern=B64URL)
    rawId: str = Field(min_length=1, max_length=1400, pattern=B64URL)
    type: Literal["public-key"]
    response: AssertionResponse


def _name(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    if not value:
        raise ValueError("the name cannot be blank")
    return value


class RegisterBody(BaseModel):
    challenge_id: str = Field(pattern=CHALLENGE_ID)
    credential: RegistrationCredentialBody
    name: str | None = Field(default=None, max_length=64)

    _clean = field_validator("name")(_name)


class RenameBody(BaseModel):
    name: str = Field(min_length=1, max_length=64)

    _clean = field_validator("name")(_name)


class LoginBody(BaseModel):
    challenge_id: str = Field(pattern=CHALLENGE_ID)
    credential: AssertionCredentialBody
    mode: Literal["token", "cookie"] = "token"


class MfaOptionsBody(BaseModel):
    mfa_ticket: str = Field(min_length=10, max_length=2048)


class MfaBody(MfaOptionsBody):
    challenge_id: str = Field(pattern=CHALLENGE_ID)
    credential: AssertionCredentialBody
    mode: Literal["token", "cookie"] = "token"


# --- responses (described for the OpenAPI document; the handlers build these dicts) ----------
class Passkey(Closed):
    """A passkey as its owner sees it (`passkeys.public`): never the key or the credential id."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    backup_eligible: bool  # a synced passkey (it may live on several devices)
    backed_up: bool
    transports: list[str]  # the authenticator's hints: internal, hybrid, usb, nfc, ble

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": 7, "name": "Work laptop", "created_at": When, "last_used_at": None, "backup_eligible": True,
        "backed_up": True, "transports": ["internal", "hybrid"]}]})


class PasskeyList(Closed):
    """The member's passkeys, oldest first."""

    passkeys: list[Passkey]

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"passkeys": [{
        "id": 7, "name": "Work laptop", "created_at": When, "last_used_at": When, "backup_eligible": True,
        "backed_up": True, "transports": ["internal", "hybrid"]}]}]})


class OnePasskey(Closed):
    passkey: Passkey


class RelyingParty(Open):
    id: str
    name: str


class WebAuthnUser(Open):
    id: str  # the opaque user handle, base64url
    name: str
    displayName: str  # the WebAuthn field names are camelCase


class CreationOptions(Open):
    """`PublicKeyCredentialCreationOptionsJSON` for `navigator.credentials.create` (binary fields
    base64url); the inner objects follow the WebAuthn spec and are not described further here."""

    rp: RelyingParty
    user: WebAuthnUser
    challenge: str
    pubKeyCredParams: list[dict[str, Any]]
    timeout: int
    excludeCredentials: list[dict[str, Any]]  # the member's passkeys: one per authenticator
    authenticatorSelection: dict[str, Any]  # a discoverable credential is required
    attestation: str


class RequestOptions(Open):
    """`PublicKeyCredentialRequestOptionsJSON` for `navigator.credentials.get` (binary fields base64url).
    `allowCredentials` is empty for a passkey-only sign-in (discoverable credentials)."""

    challenge: str
    timeout: int
    rpId: str
    allowCredentials: list[dict[str, Any]]
    userVerification: Literal["required", "preferred", "discouraged"]


class RegistrationCeremony(Closed):
    """Pass `publicKey` to `navigator.credentials.create`, then post its answer with `challenge_id`."""

    challenge_id: str = Field(pattern=CHALLENGE_ID)
    publicKey: CreationOptions


class SignInCeremony(Closed):
    """Pass `publicKey` to `navigator.credentials.get`, then post its answer with `challenge_id`."""

    challenge_id: str = Field(pattern=CHALLENGE_ID)
    publicKey: RequestOptions


def _service(request: Request) -> Passkeys:
    return Passkeys(auth_of(request))


async def _member(request: Request) -> tuple[Any, str]:
    principal = principal_of(request)
    if principal.kind == "bot" or not principal.session_id:
        raise BadRequest("Bots cannot have passkeys.", code="not_for_bots")
    return await user_queries.by_id(auth_of(request).db, principal.user_id), principal.session_id


@requires()
async def list_passkeys(request: Request) -> Response:
    user, _session = await _member(request)
    return JSONResponse({"passkeys": [public(r) for r in await _service(request).list_for(user["id"])]})


@requires()
async def register_options(request: Request) -> Response:
    user, session_id = await _member(request)
    return JSONResponse((await _service(request).registration_options(user, session_id)).body())


@requires()
async def register(request: Request) -> Response:
    body = await read_json(request, RegisterBody)
    user, session_id = await _member(request)
    name = body.name or f"Passkey on {client_info(request).device}"[:64]
    row = await _service(request).register(user, session_id, body.challenge_id,
                                           body.credential.model_dump(), name)
    return JSONResponse({"passkey": public(row)}, status_code=201)


@requires()
async def rename(request: Request) -> Response:
    body = await read_json(request, RenameBody)
    user, _session = await _member(request)
    row = await _service(request).rename(user["id"], _passkey_id(request), body.name)
    return JSONResponse({"passkey": public(row)})


@requires()
async def remove(request: Request) -> Response:
    user, _session = await _member(request)
    await _service(request).remove(user["id"], _passkey_id(request), ip=client_info(request).ip)
    return Response(status_code=204)


def _passkey_id(request: Request) -> int:
    return int(request.path_params["passkey_id"])


async def login_options(request: Request) -> Response:
    return JSONResponse((await _service(request).login_options()).body())


async def login(request: Request) -> Response:
    body = await read_json(request, LoginBody)
    auth = auth_of(request)
    client = client_info(request)
    verified = await _service(request).login(body.challenge_id, body.credential.model_dump(), client)
    # A passkey with user verification is two factors in one gesture (the device and its PIN or
    # biometric), so the session counts as MFA; the TOTP step is not asked for.
    tokens = await auth.start_session(verified.user, client, mfa=verified.user_verified)
    return _tokens_response(request, auth, tokens, verified.user, body.mode)


async def _ticket_user(request: Request, ticket: str) -> Any:
    """The member the MFA ticket names (as `/api/auth/login/mfa` reads it)."""
    auth = auth_of(request)
    try:
        claims = auth.signer.verify_ticket(ticket, "mfa")
    except Exception:
        raise Unauthorized("The sign-in step expired; sign in again.", code="invalid_mfa_ticket") from None
    user = await user_queries.by_id(auth.db, int(claims["sub"]))
    if user is None or user["totp_enabled_at"] is None:
        raise Unauthorized("The sign-in step expired; sign in again.", code="invalid_mfa_ticket")
    return user


async def mfa_options(request: Request) -> Response:
    body = await read_json(request, MfaOptionsBody)
    user = await _ticket_user(request, body.mfa_ticket)
    return JSONResponse((await _service(request).mfa_options(user, body.mfa_ticket)).body())


async def mfa_login(request: Request) -> Response:
    body = await read_json(request, MfaBody)
    auth = auth_of(request)
    client = client_info(request)
    user = await _ticket_user(request, body.mfa_ticket)
    key = f"mfa:{user['id']}"  # the TOTP step's lockout: a passkey is another way through the same door
    lock = await auth.lockout.active(None, key, None)
    if lock is not None:
        raise AccountLocked(headers={"Retry-After": str(lock.retry_after)})
    try:
        await _service(request).second_factor(user, body.mfa_ticket, body.challenge_id,
                                              body.credential.model_dump(), client.ip)
    except AppError:
        await auth.lockout.record(None, key, None, success=False)
        raise
    await auth.lockout.record(None, key, None, success=True)
    tokens = await auth.start_session(user, client, mfa=True)
    return _tokens_response(request, auth, tokens, user, body.mode)


routes = [
    api("/api/auth/passkeys", list_passkeys, ["GET"], ok={200: PasskeyList}),
    api("/api/auth/passkeys/register/options", register_options, ["POST"], ok={200: RegistrationCeremony}),
    api("/api/auth/passkeys/register", register, ["POST"], ok={201: OnePasskey}),
    api("/api/auth/passkeys/{passkey_id:int}", rename, ["PATCH"], ok={200: OnePasskey}),
    api("/api/auth/passkeys/{passkey_id:int}", remove, ["DELETE"]),
    api("/api/auth/login/passkey/options", login_options, ["POST"], ok={200: SignInCeremony}),
    api("/api/auth/login/passkey", login, ["POST"], ok={200: Session}),
    api("/api/auth/login/mfa/passkey/options", mfa_options, ["POST"], ok={200: SignInCeremony}),
    api("/api/auth/login/mfa/passkey", mfa_login, ["POST"], ok={200: Session}),
]
