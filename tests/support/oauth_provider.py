"""A real OpenID Connect + OAuth 2 provider for tests, served by uvicorn on 127.0.0.1.

One server plays both providers: a Google-like OpenID Connect provider (discovery document, JWKS,
RS256 ID tokens signed with joserfc) under `/oidc/*`, and a Discord-like OAuth 2 provider at
Discord's paths (`/oauth2/authorize`, `/api/oauth2/token`, `/api/users/@me`). The authorize step
stands for a user who consents at once: it redirects straight back with a code and the state. The
token endpoint checks what a real one checks: client credentials, a single-use code bound to its
client and redirect URI, and the PKCE verifier against the S256 challenge given at authorize.

Knobs let a test choose the consenting user (`user`), make the ID token carry a wrong nonce
(`wrong_nonce`), sign it with a key outside the JWKS (`foreign_key`: "same_kid" or "unknown_kid"),
or deny consent (`deny`). What the app sent is recorded in `authorize_requests`/`token_requests`,
and every refusal in `rejections`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, replace
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import uvicorn
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.inloop import QuietServer as _QuietServer
from tests.support.services import free_port

GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET = "vonix-google-test", "google-test-secret"
DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET = "vonix-discord-test", "discord-test-secret"
KID = "local-provider-1"


@cache
def _rsa_key(kid: str) -> RSAKey:
    """RSA keys take a moment to make; one per kid per test run is enough (a new one for rogues)."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"}, private=True)


@cache
def _rogue_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"}, private=True)


def rotated_key() -> RSAKey:
    """The provider's next signing key, under a new key id."""
    return _rsa_key("local-provider-2")


@dataclass(frozen=True)
class ProviderUser:
    """The person who consents at the provider next."""

    sub: str = "100200300"
    email: str | None = "alex@example.com"
    email_verified: bool = True
    name: str = "Alex Example"
    username: str = "alex.example"  # Discord handle
    avatar: str | None = "a1b2c3"


@dataclass
class _Grant:
    flavor: str
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    user: ProviderUser




class LocalProvider:
    def __init__(self) -> None:
        self.port = free_port()
        self.key = _rsa_key(KID)
        self.user = ProviderUser()
        self.wrong_nonce = False
        self.foreign_key: str | None = None  # "same_kid" | "unknown_kid"
        self.deny = False
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.rejections: list[str] = []
        self._grants: dict[str, _Grant] = {}
        self._access: dict[str, ProviderUser] = {}
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[Any] | None = None
        self.app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self._discovery),
            Route("/oidc/jwks", self._jwks),
            Route("/oidc/authorize", self._authorize_oidc),
            Route("/oidc/token", self._token_oidc, methods=["POST"]),
            Route("/oauth2/authorize", self._authorize_discord),
            Route("/api/oauth2/token", self._token_discord, methods=["POST"]),
            Route("/api/users/@me", self._me),
        ])

    # --- wiring -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, Any]:
        """Settings overrides that point the app at this provider."""
        return {
            "OAUTH_GOOGLE_CLIENT_ID": GOOGLE_CLIENT_ID, "OAUTH_GOOGLE_CLIENT_SECRET": GOOGLE_CLIENT_SECRET,
            "OAUTH_GOOGLE_DISCOVERY_URL": f"{self.base_url}/.well-known/openid-configuration",
            "OAUTH_DISCORD_CLIENT_ID": DISCORD_CLIENT_ID, "OAUTH_DISCORD_CLIENT_SECRET": DISCORD_CLIENT_SECRET,
            "OAUTH_DISCORD_BASE_URL": self.base_url, "OAUTH_TIMEOUT": 5,
        }

    def consent_as(self, **fields: Any) -> ProviderUser:
        self.user = replace(ProviderUser(), **fields)
        return self.user

    async def start(self) -> LocalProvider:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan="off")
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(400):
            if self._server.started:
                return self
            if self._task.done():
                self._task.result()
                raise RuntimeError("provider exited during start-up")
            await asyncio.sleep(0.01)
        raise TimeoutError("provider did not start")

    def request_stop(self) -> None:
        """Start shutting down without waiting (lets a test stop several servers at once)."""
        if self._server is not None:
            self._server.should_exit = True

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, timeout=10)

    async def __aenter__(self) -> LocalProvider:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- OpenID Connect ---------------------------------------------------------------------------
    async def _discovery(self, request: Request) -> Response:
        base = self.base_url
        return JSONResponse({
            "issuer": base, "authorization_endpoint": f"{base}/oidc/authorize",
            "token_endpoint": f"{base}/oidc/token", "jwks_uri": f"{base}/oidc/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
        })

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def _authorize_oidc(self, request: Request) -> Response:
        return self._authorize(request, "oidc", GOOGLE_CLIENT_ID)

    async def _token_oidc(self, request: Request) -> Response:
        return await self._token(request, "oidc", GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)

    def _id_token(self, grant: _Grant, access_token: str) -> str:
        now = int(time.time())
        user = grant.user
        claims = {"iss": self.base_url, "sub": user.sub, "aud": grant.client_id, "iat": now, "exp": now + 300,
                  "nonce": "not-the-nonce-you-sent" if self.wrong_nonce else grant.nonce,
                  "at_hash": create_half_hash(access_token, "RS256").decode(),
                  "email": user.email, "email_verified": user.email_verified, "name": user.name}
        key = self.key
        if self.foreign_key == "same_kid":
            key = _rogue_key(KID)
        elif self.foreign_key == "unknown_kid":
            key = _rogue_key("rogue-key")
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    # --- Discord-like OAuth 2 ---------------------------------------------------------------------
    async def _authorize_discord(self, request: Request) -> Response:
        return self._authorize(request, "discord", DISCORD_CLIENT_ID)

    async def _token_discord(self, request: Request) -> Response:
        return await self._token(request, "discord", DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET)

    async def _me(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = self._access.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            return self._reject("me: unknown access token", "invalid_token", 401)
        return JSONResponse({"id": user.sub, "username": user.username, "global_name": user.name,
                             "email": user.email, "verified": user.email_verified, "avatar": user.avatar})

    # --- shared steps -----------------------------------------------------------------------------
    def _reject(self, reason: str, error: str, status: int = 400) -> Response:
        self.rejections.append(reason)
        return JSONResponse({"error": error, "error_description": reason}, status_code=status)

    def _authorize(self, request: Request, flavor: str, client_id: str) -> Response:
        params = dict(request.query_params)
        self.authorize_requests.append({"flavor": flavor, **params})
        if params.get("client_id") != client_id or not params.get("redirect_uri"):
            return self._reject("authorize: unknown client or no redirect_uri", "invalid_request")
        if params.get("response_type") != "code" or not params.get("state"):
            return self._reject("authorize: not a code request with state", "invalid_request")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return self._reject("authorize: PKCE S256 challenge missing", "invalid_request")
        if flavor == "oidc" and ("openid" not in params.get("scope", "").split() or not params.get("nonce")):
            return self._reject("authorize: openid scope or nonce missing", "invalid_request")
        back: dict[str, str] = {"state": params["state"]}
        if self.deny:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            self._grants[code] = _Grant(flavor, client_id, params["redirect_uri"], params["code_challenge"],
                                        params.get("nonce"), self.user)
            back["code"] = code
        return RedirectResponse(f"{params['redirect_uri']}?{urlencode(back)}", status_code=302)

    async def _token(self, request: Request, flavor: str, client_id: str, secret: str) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))  # x-www-form-urlencoded
        self.token_requests.append({"flavor": flavor, **form})
        presented = _client_credentials(request.headers.get("authorization", ""), form)
        if presented != (client_id, secret):
            return self._reject("token: bad client credentials", "invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return self._reject("token: unsupported grant type", "unsupported_grant_type")
        grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.flavor != flavor or grant.client_id != client_id:
            return self._reject("token: unknown or used code", "invalid_grant")
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._reject("token: redirect_uri differs from authorize", "invalid_grant")
        verifier = form.get("code_verifier", "")
        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not 43 <= len(verifier) <= 128 or not secrets.compare_digest(expected, grant.challenge):
            return self._reject("token: PKCE code_verifier does not match the challenge", "invalid_grant")
        access_token = secrets.token_urlsafe(24)
        self._access[access_token] = grant.user
        body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}
        if flavor == "oidc":
            body["id_token"] = self._id_token(grant, access_token)
        return JSONResponse(body)


def _client_credentials(header: str, form: dict[str, str]) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        client_id, _, secret = base64.b64decode(value).decode("latin1").partition(":")
        return unquote(client_id), unquote(secret)
    if "client_id" in form:
        return form["client_id"], form.get("client_secret", "")
    return None
