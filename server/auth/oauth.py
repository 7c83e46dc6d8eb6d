"""OAuth sign-in: the state cookie, the callback's checks, and the identity a provider vouches for.

`begin` makes a fresh state, PKCE verifier and (OpenID Connect) nonce and keeps them, with the
user to link to and where to go afterwards, in one short-lived cookie: a signed ticket, encrypted
so the verifier and nonce are not readable even from a leaked cookie. The callback is accepted only
when its `state` equals the cookie's (constant-time). The code is exchanged with the verifier; a
Google ID token is checked against the provider's published keys (signature, issuer, audience,
expiry, nonce) by joserfc and authlib, never by hand.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError

from server.auth.oauth_providers import KNOWN, Provider, ProviderClient, ProviderError, configured
from server.auth.principal import Principal
from server.auth.service import AuthService
from server.auth.tokens import InvalidToken, same

STATE_PURPOSE = "oauth"
STATE_TTL = 600
ID_TOKEN_LEEWAY = 60
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


class Refused(Exception):
    """The sign-in is refused; `code` goes to the browser (`/?oauth_error=code`), `reason` to the log."""

    def __init__(self, code: str, reason: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Flow:
    """What the state cookie carried from `begin` to the callback."""

    provider: str
    state: str
    code_verifier: str
    nonce: str | None
    link_user_id: int | None
    link_session_id: str | None
    next_path: str


@dataclass(frozen=True)
class Profile:
    """The identity a provider vouched for, normalised across providers."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    names: tuple[str, ...]  # username candidates, best first
    display_name: str | None
    avatar_url: str | None


def safe_next(value: str | None) -> str:
    """A same-origin relative path, or `/`: never `//host`, `/\\host`, a scheme or control characters."""
    if not value or len(value) > 512 or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return urlunsplit(("", "", parts.path, parts.query, "")) or "/"


def state_cookie(provider: str) -> tuple[str, str]:
    """The cookie name and path of a provider's flow (one per provider, so two tabs do not clash)."""
    return f"vonix_oauth_{provider}", f"/api/auth/oauth/{provider}"


class OAuth:
    def __init__(self, auth: AuthService, client: ProviderClient | None = None) -> None:
        self.auth = auth
        self.settings = auth.settings
        self.client = client or ProviderClient(auth.settings.oauth_timeout, breakers=auth.breakers)

    def provider(self, name: str) -> Provider | None:
        return configured(self.settings, name) if name in KNOWN else None

    def redirect_uri(self, provider: Provider) -> str:
        return f"{self.settings.public_url.rstrip('/')}/api/auth/oauth/{provider.name}/callback"

    # --- the way out -----------------------------------------------------------------------------
    async def begin(self, provider: Provider, principal: Principal | None, next_path: str | None) -> tuple[str, str]:
        """The provider URL to send the browser to, and the state cookie's value."""
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        nonce = secrets.token_urlsafe(32) if provider.openid else None
        url = await self.client.authorization_url(provider, self.redirect_uri(provider), state=state,
                                                  code_verifier=verifier, nonce=nonce)
        linking = principal is not None and principal.kind == "user" and principal.session_id is not None
        ticket = self.auth.signer.issue_ticket(
            STATE_PURPOSE, provider.name, STATE_TTL, state=state, cv=verifier, nonce=nonce,
            link=principal.user_id if linking and principal else None,
            sid=principal.session_id if linking and principal else None, next=safe_next(next_path))
        return url, self.auth.keyring.encrypt(ticket)

    # --- the way back ----------------------------------------------------------------------------
    def read_flow(self, provider: str, cookie: str | None, state: str | None) -> Flow:
        if not cookie or not state:
            raise Refused("invalid_state", "no state cookie" if not cookie else "no state parameter")
        ticket = self.auth.keyring.decrypt(cookie)
        if ticket is None:
            raise Refused("invalid_state", "state cookie does not decrypt")
        try:
            claims = self.auth.signer.verify_ticket(ticket, STATE_PURPOSE)
        except InvalidToken as exc:
            raise Refused("invalid_state", f"state ticket rejected: {exc}") from None
        if claims.get("sub") != provider or not same(state, str(claims.get("state", ""))):
            raise Refused("invalid_state", "state parameter does not match the cookie")
        link = claims.get("link")
        return Flow(provider, state, str(claims["cv"]), claims.get("nonce"),
                    int(link) if link is not None else None, claims.get("sid"), safe_next(claims.get("next")))

    async def identify(self, provider: Provider, flow: Flow, code: str) -> Profile:
        """Exchange the code and return who the provider says signed in."""
        try:
            token = await self.client.exchange_code(provider, self.redirect_uri(provider), code, flow.code_verifier)
            if provider.openid:
                id_token = token.get("id_token")
                if not isinstance(id_token, str):
                    raise Refused("invalid_id_token", "token response without an ID token")
                return google_profile(await self.verify_id_token(provider, id_token, flow.nonce,
                                                                 str(token["access_token"])))
            return discord_profile(await self.client.user(provider, token))
        except ProviderError as exc:
            raise Refused("provider_error", str(exc)) from None

    async def verify_id_token(self, provider: Provider, id_token: str, nonce: str | None,
                              access_token: str | None) -> dict[str, Any]:
        endpoints = await self.client.endpoints(provider)
        algorithms = list(endpoints.algorithms)
        try:
            try:
                decoded = jwt.decode(id_token, await self.client.key_set(provider), algorithms=algorithms)
            except InvalidKeyIdError:  # perhaps rotated since we cached the keys: fetch them once more
                decoded = jwt.decode(id_token, await self.client.key_set(provider, refresh=True),
                                     algorithms=algorithms)
            claims = CodeIDToken(
                decoded.claims, decoded.header,
                {"iss": {"essential": True, "value": endpoints.issuer},
                 "aud": {"essential": True, "value": provider.client_id}},
                {"nonce": nonce, "client_id": provider.client_id, "access_token": access_token})
            claims.validate(leeway=ID_TOKEN_LEEWAY)
        except (JoseError, ValueError, TypeError) as exc:
            raise Refused("invalid_id_token", f"{exc.__class__.__name__}: {exc}") from None
        if nonce is None or not isinstance(claims.get("sub"), str):
            raise Refused("invalid_id_token", "no nonce to check or no subject")
        return dict(claims)


def _email(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if len(email) <= 254 and _EMAIL.match(email) else None


def _text(value: Any, limit: int) -> str | None:
    return (value.strip()[:limit] or None) if isinstance(value, str) else None


def google_profile(claims: dict[str, Any]) -> Profile:
    email = _email(claims.get("email"))
    verified = claims.get("email_verified") in (True, "true")
    names = tuple(n for n in (claims.get("name"), claims.get("given_name"),
                              email.split("@")[0] if email else None) if isinstance(n, str))
    picture = claims.get("picture")
    return Profile("google", str(claims["sub"]), email, verified and email is not None, names,
                   _text(claims.get("name"), 64), picture if isinstance(picture, str) and len(picture) <= 512
                   and picture.startswith("https://") else None)


def discord_profile(data: dict[str, Any]) -> Profile:
    user_id = str(data["id"])
    email = _email(data.get("email"))
    avatar = data.get("avatar")
    names = tuple(n for n in (data.get("username"), data.get("global_name")) if isinstance(n, str))
    avatar_url = (f"https://cdn.discordapp.com/avatars/{user_id}/{avatar}.png"
                  if isinstance(avatar, str) and re.fullmatch(r"[A-Za-z0-9_]{1,64}", avatar) else None)
    return Profile("discord", user_id, email, data.get("verified") is True and email is not None, names,
                   _text(data.get("global_name") or data.get("username"), 64), avatar_url)


def username_base(names: tuple[str, ...]) -> str:
    """The first candidate that can be made a valid username (`^[A-Za-z0-9_]{3,32}$`), else `user`."""
    for name in names:
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        cleaned = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]+", "_", ascii_name)).strip("_")[:32]
        if len(cleaned) >= 3:
            return cleaned
    return "user"
