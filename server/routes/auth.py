"""`/api/auth/*`: the account API bots and the PWA rely on (shapes documented in the issue).

Two modes: Bearer (tokens in the JSON body, for bots and API clients) and cookie (`"mode":
"cookie"`: HttpOnly access and refresh cookies plus a readable CSRF cookie, tokens never exposed
to page scripts), for the PWA.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel, field_validator
from starlette.requests import Request
from starlette.responses import Response

from server.auth import audit
from server.auth.mailed_tokens import MailedTokens, mail_after_signup, mail_reset_if_owned
from server.auth.mailed_tokens import resend_verification as resend_mail
from server.auth.mfa import CodeCheck, Mfa
from server.auth.passwords import PasswordRejected
from server.auth.principal import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    Principal,
    principal_of,
    requires,
)
from server.auth.service import AuthService, auth_of, client_info
from server.auth.sessions import ClientInfo, TokenPair
from server.db.queries import users as user_queries
from server.errors import (
    AppError,
    BadRequest,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationFailed,
    handle_app_error,
)
from server.jsonio import JSONResponse, read_json
from server.openapi import api
from server.openapi.responses import Accepted, Closed, PrivateUser
from server.resources import resources_of

SESSION_COOKIE = "vonix_session"  # readable: the access token's expiry, so the PWA knows it is signed in
USERNAME = r"^[A-Za-z0-9_]{3,32}$"
EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"


class RegisterBody(BaseModel):
    username: str = Field(pattern=USERNAME)
    email: str = Field(max_length=254, pattern=EMAIL)
    password: str = Field(min_length=1, max_length=256)


class LoginBody(BaseModel):
    login: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)
    mode: Literal["token", "cookie"] = "token"


class MfaBody(BaseModel):
    mfa_ticket: str = Field(min_length=10, max_length=2048)
    code: str = Field(min_length=6, max_length=16)
    mode: Literal["token", "cookie"] = "token"


class RefreshBody(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=256)
    mode: Literal["token", "cookie"] = "token"


class CodeBody(BaseModel):
    code: str = Field(min_length=6, max_length=16)


class DisableMfaBody(BaseModel):
    password: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=6, max_length=16)


class ForgotBody(BaseModel):
    email: str = Field(max_length=254, pattern=EMAIL)


class ResetBody(BaseModel):
    token: str = Field(min_length=20, max_length=128)
    password: str = Field(min_length=1, max_length=256)


class VerifyEmailBody(BaseModel):
    token: str = Field(min_length=20, max_length=128)

    @field_validator("token")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


# --- responses (described for the OpenAPI document; the handlers build these dicts) ----------
TOKEN_EXAMPLE = "eyJhbGciOiJIUzI1NiJ9.…"


class Registered(Closed):
    user: PrivateUser


class TokenSession(Closed):
    """`"mode": "token"`: the tokens in the body (bots and API clients)."""

    user: PrivateUser
    expires_in: int
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]


class CookieSession(Closed):
    """`"mode": "cookie"`: the tokens are HttpOnly cookies; the CSRF token is for `X-CSRF-Token`."""

    user: PrivateUser
    expires_in: int
    token_type: Literal["cookie"]
    csrf_token: str


class MfaRequired(Closed):
    """The password was right and 2FA is on: send the code with this ticket to `/api/auth/login/mfa`."""

    mfa_required: Literal[True]
    mfa_ticket: str


class Session(RootModel[TokenSession | CookieSession]):
    """A new session: its tokens in the body, or in cookies."""


class LoginResult(RootModel[TokenSession | CookieSession | MfaRequired]):
    """A new session, or the second step of a sign-in with 2FA."""


class SessionItem(Closed):
    id: str
    device: str | None
    browser: str | None
    os: str | None
    ip: str | None
    user_agent: str | None
    created_at: datetime
    last_active_at: datetime
    mfa: bool
    current: bool


class Sessions(Closed):
    sessions: list[SessionItem]


class Revoked(Closed):
    revoked: int


class MfaEnrolment(Closed):
    secret: str
    otpauth_uri: str
    qr_svg: str


class RecoveryCodes(Closed):
    recovery_codes: list[str]


def _tokens_response(request: Request, auth: AuthService, tokens: TokenPair, user: Any, mode: str,
                     status: int = 200) -> Response:
    body: dict[str, Any] = {"user": user_queries.private(user), "expires_in": tokens.expires_in}
    people = resources_of(request).people
    if people is not None and user["role"] != "bot":
        people.visited(user["id"])  # sign-in and refresh are what opening the app does: daily XP
    if mode == "token":
        body.update(tokens.body())
        return JSONResponse(body, status_code=status)
    csrf = secrets.token_urlsafe(24)
    body.update(token_type="cookie", csrf_token=csrf)  # noqa: S106
    response = JSONResponse(body, status_code=status)
    secure = auth.settings.secure_cookies
    response.set_cookie(ACCESS_COOKIE, tokens.access_token, max_age=tokens.expires_in, httponly=True,
                        secure=secure, samesite="lax", path="/")
    response.set_cookie(REFRESH_COOKIE, tokens.refresh_token, max_age=auth.settings.refresh_token_ttl,
                        httponly=True, secure=secure, samesite="lax", path="/api/auth")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=auth.settings.refresh_token_ttl, httponly=False,
                        secure=secure, samesite="lax", path="/")
    # Page scripts cannot see the HttpOnly cookies: this one tells the PWA, without a request, that
    # a session exists and when its access token expires (refresh first when it is past).
    response.set_cookie(SESSION_COOKIE, str(tokens.access_expires_at), max_age=auth.settings.refresh_token_ttl,
                        httponly=False, secure=secure, samesite="lax", path="/")
    return response


def _clear_cookies(response: Response) -> Response:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/api/auth")
    response.delete_cookie(CSRF_COOKIE, path="/")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


CODE_REUSED_MESSAGE = "This code was just used; wait for the next one (codes change every 30 seconds)."
_CODE_HINTS = {
    CodeCheck.WRONG: "Type the 6-digit code your authenticator app shows now. If it keeps failing, check "
                     "that your device's clock is set automatically.",
    CodeCheck.EXPIRED: "That code has expired; type the one your app shows now. If this keeps happening, "
                       "your device's clock is behind: set it to update automatically.",
    CodeCheck.CLOCK_AHEAD: "That code is not valid yet: your device's clock is ahead. Set it to update "
                           "automatically, then type the code your app shows.",
    CodeCheck.MALFORMED: "Type the 6 digits your authenticator app shows (or, when signing in, a recovery "
                         "code like abcde-fghjk).",
    CodeCheck.RECOVERY_USED: "That recovery code was already used; each one works once.",
    CodeCheck.REUSED: CODE_REUSED_MESSAGE,
}


def _code_refused(check: CodeCheck, *, status: int, code: str) -> AppError:
    """The error for a refused 2FA code: the reason in `details`, and `code_reused` on its own code."""
    details = [{"field": "code", "code": check.value, "message": _CODE_HINTS.get(check, _CODE_HINTS[CodeCheck.WRONG])}]
    if check is CodeCheck.REUSED:
        return AppError(CODE_REUSED_MESSAGE, code="code_reused", status=status, details=details)
    return AppError("That code is not right.", code=code, status=status, details=details)


async def register(request: Request) -> Response:
    """201 with the new account whether or not the address belongs to another account: the answer,
    the statements run and the work spawned are the same either way; only the mail differs (a
    verification link, or a notice to the address's owner), and it is sent after the answer."""
    body = await read_json(request, RegisterBody)
    auth = auth_of(request)
    user = await auth.register(body.username, body.email, body.password, client_info(request))
    resources_of(request).spawn(mail_after_signup(auth.db, auth.mailer, auth.settings.public_url, user),
                                "signup-mail")
    return JSONResponse({"user": user_queries.private(user)}, status_code=201)


async def login(request: Request) -> Response:
    body = await read_json(request, LoginBody)
    auth = auth_of(request)
    result = await auth.login(body.login, body.password, client_info(request))
    if result.mfa_ticket is not None:
        return JSONResponse({"mfa_required": True, "mfa_ticket": result.mfa_ticket})
    assert result.tokens is not None
    return _tokens_response(request, auth, result.tokens, result.user, body.mode)


async def login_mfa(request: Request) -> Response:
    body = await read_json(request, MfaBody)
    auth = auth_of(request)
    client = client_info(request)
    try:
        claims = auth.signer.verify_ticket(body.mfa_ticket, "mfa")
    except Exception:
        raise Unauthorized("The sign-in step expired; sign in again.", code="invalid_mfa_ticket") from None
    user = await user_queries.by_id(auth.db, int(claims["sub"]))
    if user is None or user["totp_enabled_at"] is None:
        raise Unauthorized("The sign-in step expired; sign in again.", code="invalid_mfa_ticket")
    key = f"mfa:{user['id']}"
    from server.auth.service import AccountLocked

    lock = await auth.lockout.active(None, key, None)
    if lock is not None:
        raise AccountLocked(headers={"Retry-After": str(lock.retry_after)})
    check = await Mfa(auth.db, auth.keyring, auth.settings.secret()).check(user, body.code)
    if check is not CodeCheck.OK:
        await auth.lockout.record(None, key, None, success=False)
        raise _code_refused(check, status=401, code="invalid_mfa_code")
    await auth.lockout.record(None, key, None, success=True)
    tokens = await auth.start_session(user, client, mfa=True)
    return _tokens_response(request, auth, tokens, user, body.mode)


async def refresh(request: Request) -> Response:
    body = await read_json(request, RefreshBody) if await request.body() else RefreshBody()
    auth = auth_of(request)
    presented = body.refresh_token or request.cookies.get(REFRESH_COOKIE)
    mode = body.mode if body.refresh_token else ("cookie" if request.cookies.get(REFRESH_COOKIE) else body.mode)
    if not presented:
        raise Unauthorized("No refresh token.", code="invalid_refresh_token")
    try:
        tokens = await auth.refresh(presented, client_info(request))
    except AppError as exc:
        if mode != "cookie" or exc.status != 401:
            raise
        # The session is over: drop its cookies so the PWA's next start knows it is signed out
        # (no `vonix_session` cookie) instead of retrying a refresh that cannot succeed.
        return _clear_cookies(await handle_app_error(request, exc))
    user = await user_queries.by_id(auth.db, (await auth.sessions.get(tokens.session_id))["user_id"])
    return _tokens_response(request, auth, tokens, user, mode)


@requires()
async def logout(request: Request) -> Response:
    principal = principal_of(request)
    auth = auth_of(request)
    if principal.session_id:
        await auth.revoke_sessions([principal.session_id], "logout", actor_id=principal.user_id,
                                   user_id=principal.user_id, ip=client_info(request).ip)
    return _clear_cookies(Response(status_code=204))


@requires()
async def me(request: Request) -> Response:
    principal = principal_of(request)
    user = await user_queries.by_id(auth_of(request).db, principal.user_id)
    return JSONResponse(user_queries.private(user))


@requires()
async def list_sessions(request: Request) -> Response:
    principal = principal_of(request)
    rows = await auth_of(request).sessions.list_for_user(principal.user_id)

    def item(r: Any) -> dict[str, Any]:
        # Browser and OS come from the stored User-Agent, so sessions opened before they were
        # shown get them too; `device` is the short label ("Chrome on Android").
        client = ClientInfo(r["ip"], r["user_agent"]).client
        return {"id": r["id"], "device": client.device if r["user_agent"] else (r["device"] or client.device),
                "browser": client.browser, "os": client.os, "ip": r["ip"], "user_agent": r["user_agent"],
                "created_at": r["created_at"], "last_active_at": r["last_active_at"], "mfa": r["mfa"],
                "current": r["id"] == principal.session_id}

    return JSONResponse({"sessions": [item(r) for r in rows]})


@requires()
async def revoke_session(request: Request) -> Response:
    principal = principal_of(request)
    auth = auth_of(request)
    session_id = request.path_params["session_id"]
    session = await auth.sessions.get(session_id)
    if session is None or session["user_id"] != principal.user_id or session["revoked_at"] is not None:
        raise NotFound("No such session.", code="session_not_found")
    await auth.revoke_sessions([session_id], "revoked_by_user", actor_id=principal.user_id,
                               user_id=principal.user_id, ip=client_info(request).ip)
    return Response(status_code=204)


@requires()
async def revoke_other_sessions(request: Request) -> Response:
    principal = principal_of(request)
    auth = auth_of(request)
    others = await auth.sessions.live_ids_for_user(principal.user_id, except_id=principal.session_id)
    revoked = await auth.revoke_sessions(others, "revoked_by_user", actor_id=principal.user_id,
                                         user_id=principal.user_id, ip=client_info(request).ip)
    return JSONResponse({"revoked": len(revoked)})


def _mfa(auth: AuthService) -> Mfa:
    return Mfa(auth.db, auth.keyring, auth.settings.secret())


async def _current_user(request: Request) -> tuple[AuthService, Principal, Any]:
    auth = auth_of(request)
    principal = principal_of(request)
    if principal.kind == "bot":
        raise BadRequest("Bots cannot manage two-factor authentication.", code="not_for_bots")
    return auth, principal, await user_queries.by_id(auth.db, principal.user_id)


@requires()
async def mfa_enroll(request: Request) -> Response:
    auth, _principal, user = await _current_user(request)
    if user["totp_enabled_at"] is not None:
        raise Conflict("Two-factor authentication is already on.", code="mfa_already_enabled")
    return JSONResponse(await _mfa(auth).enroll(user))


@requires()
async def mfa_confirm(request: Request) -> Response:
    body = await read_json(request, CodeBody)
    auth, _principal, user = await _current_user(request)
    if user["totp_enabled_at"] is not None:
        raise Conflict("Two-factor authentication is already on.", code="mfa_already_enabled")
    if user["totp_secret"] is None:
        raise BadRequest("Start enrolment first.", code="mfa_not_enrolling")
    check, codes = await _mfa(auth).confirm(user, body.code)
    if codes is None:
        raise _code_refused(check, status=ValidationFailed.status, code=ValidationFailed.code)
    await audit.record(auth.db, "mfa.enabled", actor_id=user["id"], target_type="user", target_id=user["id"])
    return JSONResponse({"recovery_codes": codes})


@requires()
async def mfa_disable(request: Request) -> Response:
    body = await read_json(request, DisableMfaBody)
    auth, _principal, user = await _current_user(request)
    if user["totp_enabled_at"] is None:
        raise Conflict("Two-factor authentication is off.", code="mfa_not_enabled")
    password_ok = await auth.passwords.verify(user["password_hash"], body.password)
    if not password_ok or not await _mfa(auth).verify(user, body.code):
        raise Unauthorized("Wrong password or code.", code="invalid_credentials")
    await _mfa(auth).disable(user["id"])
    await audit.record(auth.db, "mfa.disabled", actor_id=user["id"], target_type="user", target_id=user["id"])
    return Response(status_code=204)


async def password_forgot(request: Request) -> Response:
    """202 whatever the address: even the lookup runs in the background task, so the answer takes
    the same path (and time) whether or not an account owns the address."""
    body = await read_json(request, ForgotBody)
    auth = auth_of(request)
    resources_of(request).spawn(mail_reset_if_owned(auth.db, auth.mailer, auth.settings.public_url, body.email,
                                                    auth.settings.reset_token_ttl), "password-reset-mail")
    return JSONResponse({"status": "accepted"}, status_code=202)


async def password_reset(request: Request) -> Response:
    body = await read_json(request, ResetBody)
    auth = auth_of(request)
    tokens = MailedTokens(auth.db)
    user_id = await tokens.consume(body.token, "reset")
    if user_id is None:
        raise BadRequest("The reset link is invalid or has expired.", code="invalid_reset_token")
    user = await user_queries.by_id(auth.db, user_id)
    try:
        auth.passwords.check_policy(body.password, username=user["username"], email=user["email"])
    except PasswordRejected as exc:
        raise ValidationFailed(details=[{"field": "password", "code": exc.code, "message": str(exc)}]) from None
    await user_queries.update(auth.db, user_id, password_hash=await auth.passwords.hash(body.password))
    await tokens.void_all(user_id, "reset")
    await auth.lockout.clear(user_id)
    live = await auth.sessions.live_ids_for_user(user_id)
    await auth.revoke_sessions(live, "password_reset", actor_id=user_id, user_id=user_id,
                               ip=client_info(request).ip)
    await audit.record(auth.db, "password.reset", actor_id=user_id, target_type="user", target_id=user_id)
    return Response(status_code=204)


async def verify_email(request: Request) -> Response:
    body = await read_json(request, VerifyEmailBody)
    auth = auth_of(request)
    user_id = await MailedTokens(auth.db).consume(body.token, "verify")
    if user_id is None:
        raise BadRequest("The verification link is invalid or has expired.", code="invalid_verify_token")
    try:
        await user_queries.confirm_email(auth.db, user_id)
    except user_queries.EmailOwnedElsewhere:
        # Reachable only with a link mailed to that address, i.e. by whoever reads its mail.
        raise Conflict("That address now belongs to another account: sign in to that one, or reset its "
                       "password.", code="email_in_use") from None
    await audit.record(auth.db, "email.verified", actor_id=user_id, target_type="user", target_id=user_id)
    return Response(status_code=204)


@requires()
async def resend_verification(request: Request) -> Response:
    """202 whatever happens next: whether a link is mailed (see `mailed_tokens.resend_verification`)
    must not tell a member whether another account owns the address they typed."""
    principal = principal_of(request)
    if principal.kind == "bot":
        raise BadRequest("Bots have no email address to confirm.", code="not_for_bots")
    auth = auth_of(request)
    user = await user_queries.by_id(auth.db, principal.user_id)
    resources_of(request).spawn(resend_mail(auth.db, auth.mailer, auth.settings.public_url, user), "verify-mail")
    return JSONResponse({"status": "accepted"}, status_code=202)


routes = [
    # Only a taken username is refused: an email address never is (see `register`).
    api("/api/auth/register", register, ["POST"], errors=[(409, "username_taken")], ok={201: Registered},
        examples={"register": {"username": "alex", "email": "alex@example.com", "password": "correct horse battery"}}),
    api("/api/auth/login", login, ["POST"], ok={200: LoginResult},
        examples={"bearer": {"login": "alex", "password": "correct horse battery"},
                  "cookie": {"login": "alex@example.com", "password": "correct horse battery", "mode": "cookie"}}),
    api("/api/auth/login/mfa", login_mfa, ["POST"], ok={200: Session},
        examples={"code": {"mfa_ticket": TOKEN_EXAMPLE, "code": "123456"}}),
    api("/api/auth/refresh", refresh, ["POST"], body_required=False, ok={200: Session},
        examples={"bearer": {"refresh_token": "r1.3f9c…"}, "cookie": {"mode": "cookie"}}),
    api("/api/auth/logout", logout, ["POST"]),
    api("/api/auth/me", me, ["GET"], ok={200: PrivateUser}),
    api("/api/auth/sessions", list_sessions, ["GET"], ok={200: Sessions}),
    api("/api/auth/sessions", revoke_other_sessions, ["DELETE"], ok={200: Revoked}),
    api("/api/auth/sessions/{session_id}", revoke_session, ["DELETE"]),
    api("/api/auth/2fa/enroll", mfa_enroll, ["POST"], ok={200: MfaEnrolment}),
    api("/api/auth/2fa/confirm", mfa_confirm, ["POST"], ok={200: RecoveryCodes}),
    api("/api/auth/2fa/disable", mfa_disable, ["POST"]),
    api("/api/auth/password/forgot", password_forgot, ["POST"], ok={202: Accepted}),
    api("/api/auth/password/reset", password_reset, ["POST"]),
    api("/api/auth/email/verify", verify_email, ["POST"]),
    api("/api/auth/email/resend", resend_verification, ["POST"], body_required=False, ok={202: Accepted}),
]
