"""`/api/auth/oauth/*`: sign in, sign up and link with Google (OpenID Connect) and Discord (OAuth 2).

`login` and `callback` are browser navigations and answer with redirects: success goes to the
`next` path given to `login` (a same-origin path, else `/`) with the session cookies of cookie
mode set; a refusal goes to `/?oauth_error=<code>` and is logged at warning level. `accounts` and
the unlink `DELETE` are JSON API calls for the signed-in user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from server.auth import oauth_accounts
from server.auth.oauth import STATE_TTL, OAuth, Refused, state_cookie
from server.auth.oauth_providers import KNOWN, Provider, ProviderError
from server.auth.principal import Principal, principal_of, requires, resolve
from server.auth.service import AuthService, auth_of, client_info
from server.auth.sessions import TokenPair
from server.db.queries import oauth as oauth_queries
from server.errors import AppError, NotFound
from server.jsonio import JSONResponse
from server.observability.logging import get_logger
from server.openapi import api
from server.openapi.responses import Closed
from server.routes.auth import _tokens_response

log = get_logger("vonix.oauth")
NO_STORE = {"Cache-Control": "no-store"}
ProviderName = Literal["google", "discord"]  # `oauth_providers.KNOWN` (a contract test compares them)


class LinkedAccount(Closed):
    """A provider account linked to the member (`email` as the provider gave it, if it did)."""

    provider: ProviderName
    email: str | None
    linked_at: datetime


class OAuthAccounts(Closed):
    """The member's linked accounts and the providers this server is configured for."""

    accounts: list[LinkedAccount]
    available: list[ProviderName]


def oauth_of(request: Request) -> OAuth:
    """The app's OAuth helper, made on first use (it only holds caches of provider metadata)."""
    oauth: OAuth | None = getattr(request.app.state, "oauth", None)
    if oauth is None:
        oauth = OAuth(auth_of(request))
        request.app.state.oauth = oauth
    return oauth


def _known(request: Request) -> str:
    name = str(request.path_params["provider"])
    if name not in KNOWN:
        raise NotFound("No such sign-in provider.", code="unknown_provider")
    return name


async def _principal_or_none(request: Request) -> Principal | None:
    try:
        return await resolve(request)
    except AppError:  # an expired or bad credential: carry on as a visitor
        return None


def _refuse(provider: str, code: str, reason: str) -> Response:
    log.warning("oauth_refused", provider=provider, code=code, reason=reason)
    response = RedirectResponse(f"/?oauth_error={code}", status_code=303, headers=NO_STORE)
    name, path = state_cookie(provider)
    response.delete_cookie(name, path=path)
    return response


async def login(request: Request) -> Response:
    name = _known(request)
    oauth = oauth_of(request)
    provider = oauth.provider(name)
    if provider is None:
        raise NotFound(f"Sign-in with {name} is not configured.", code="not_configured")
    try:
        url, cookie = await oauth.begin(provider, await _principal_or_none(request),
                                        request.query_params.get("next"))
    except ProviderError as exc:
        return _refuse(name, "provider_error", str(exc))
    response = RedirectResponse(url, status_code=302, headers=NO_STORE)
    cookie_name, path = state_cookie(name)
    response.set_cookie(cookie_name, cookie, max_age=STATE_TTL, httponly=True,
                        secure=oauth.settings.secure_cookies, samesite="lax", path=path)
    return response


async def callback(request: Request) -> Response:
    name = _known(request)
    oauth = oauth_of(request)
    try:
        provider = oauth.provider(name)
        if provider is None:
            raise Refused("not_configured", f"{name} is not configured")
        return await _complete(request, oauth, provider)
    except Refused as exc:
        return _refuse(name, exc.code, exc.reason)


async def _complete(request: Request, oauth: OAuth, provider: Provider) -> Response:
    params = request.query_params
    flow = oauth.read_flow(provider.name, request.cookies.get(state_cookie(provider.name)[0]), params.get("state"))
    if params.get("error"):
        raise Refused("provider_error", f"provider answered error={params['error'][:64]}")
    code = params.get("code")
    if not code:
        raise Refused("provider_error", "callback without a code")
    profile = await oauth.identify(provider, flow, code)
    auth = oauth.auth
    client = client_info(request)
    outcome = await oauth_accounts.resolve(auth, profile, flow, client)
    user = outcome.user
    if not outcome.new_session:
        response: Response = RedirectResponse(flow.next_path, status_code=303, headers=NO_STORE)
    elif user["totp_enabled_at"] is not None:
        # Two-factor accounts finish like a password login: the PWA posts the ticket and a code
        # to /api/auth/login/mfa. The fragment never reaches a server or a Referer header.
        ticket = auth.signer.issue_ticket("mfa", str(user["id"]), auth.settings.mfa_ticket_ttl)
        response = RedirectResponse(f"{flow.next_path}#mfa_ticket={quote(ticket)}", status_code=303,
                                    headers=NO_STORE)
    else:
        tokens = await auth.start_session(user, client)
        response = RedirectResponse(flow.next_path, status_code=303, headers=NO_STORE)
        _copy_session_cookies(request, auth, tokens, user, response)
    log.info("oauth_done", provider=provider.name, action=outcome.action, user_id=user["id"])
    cookie_name, path = state_cookie(provider.name)
    response.delete_cookie(cookie_name, path=path)
    return response


def _copy_session_cookies(request: Request, auth: AuthService, tokens: TokenPair, user: Any,
                          response: Response) -> None:
    """Set exactly the cookies a cookie-mode login sets (one definition, in routes/auth.py)."""
    carrier = _tokens_response(request, auth, tokens, user, "cookie")
    response.raw_headers.extend((k, v) for k, v in carrier.raw_headers if k == b"set-cookie")


@requires()
async def accounts(request: Request) -> Response:
    principal = principal_of(request)
    oauth = oauth_of(request)
    rows = await oauth_queries.for_user(oauth.auth.db, principal.user_id)
    return JSONResponse({
        "accounts": [{"provider": r["provider"], "email": r["email"], "linked_at": r["created_at"]} for r in rows],
        "available": [name for name in KNOWN if oauth.provider(name) is not None],
    })


@requires()
async def unlink(request: Request) -> Response:
    name = _known(request)
    principal = principal_of(request)
    await oauth_accounts.unlink(auth_of(request), principal.user_id, name, client_info(request).ip)
    return Response(status_code=204)


routes = [
    api("/api/auth/oauth/accounts", accounts, ["GET"], ok={200: OAuthAccounts}),
    api("/api/auth/oauth/{provider}/login", login, ["GET"]),
    api("/api/auth/oauth/{provider}/callback", callback, ["GET"]),
    api("/api/auth/oauth/{provider}", unlink, ["DELETE"]),
]
