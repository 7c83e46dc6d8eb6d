"""The OAuth providers Vonix signs in with, and every HTTP call made to them.

Each call has a timeout (`OAUTH_TIMEOUT`) and raises `ProviderError` for anything a provider does
wrong (unreachable, slow, an error answer, a malformed body), so one wrapper here can later add a
circuit breaker around all of them. Google is OpenID Connect: its endpoints and keys come from the
discovery document, cached for an hour; the key set is fetched again when an ID token names a key
id it does not hold (key rotation). Discord is plain OAuth 2 with fixed paths under its base URL.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from server.settings import Settings

with warnings.catch_warnings():
    # Authlib 1.9 prefers the `httpx2` package and warns once at import when it falls back to
    # httpx; the fallback is the supported httpx client and works the same.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from authlib.common.errors import AuthlibBaseError

METADATA_TTL = 3600.0
JWKS_REFETCH_INTERVAL = 10.0
ASYMMETRIC_ALGS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}


class ProviderError(Exception):
    """The provider could not be used for this sign-in (its fault, or the network's)."""


@dataclass(frozen=True)
class Provider:
    name: str
    client_id: str
    client_secret: str
    scope: str
    openid: bool  # OpenID Connect: the identity is in a signed ID token
    discovery_url: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    user_url: str | None = None


KNOWN = ("google", "discord")


def configured(settings: Settings, name: str) -> Provider | None:
    """The provider called `name` when it has a client id; None when it is not configured."""
    if name == "google" and settings.oauth_google_client_id:
        secret = settings.oauth_google_client_secret
        return Provider("google", settings.oauth_google_client_id,
                        secret.get_secret_value() if secret else "", "openid email profile", openid=True,
                        discovery_url=settings.oauth_google_discovery_url)
    if name == "discord" and settings.oauth_discord_client_id:
        secret = settings.oauth_discord_client_secret
        base = settings.oauth_discord_base_url.rstrip("/")
        return Provider("discord", settings.oauth_discord_client_id,
                        secret.get_secret_value() if secret else "", "identify email", openid=False,
                        authorize_url=f"{base}/oauth2/authorize", token_url=f"{base}/api/oauth2/token",
                        user_url=f"{base}/api/users/@me")
    return None


@dataclass(frozen=True)
class Endpoints:
    authorize_url: str
    token_url: str
    issuer: str | None = None
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256",)


class ProviderClient:
    """Talks to providers. Holds only caches (discovery documents, key sets), no connections."""

    def __init__(self, timeout: float, jwks_refetch_interval: float = JWKS_REFETCH_INTERVAL,
                 breakers: Any = None) -> None:
        self.timeout = timeout
        self.breakers = breakers  # a circuit per provider host: a dead provider fails fast
        self.jwks_refetch_interval = jwks_refetch_interval  # unknown key ids cannot make us fetch more often
        self._metadata: dict[str, tuple[float, Endpoints]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def _oauth(self, provider: Provider, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(client_id=provider.client_id, client_secret=provider.client_secret,
                                 scope=provider.scope, redirect_uri=redirect_uri,
                                 code_challenge_method="S256", timeout=self.timeout)

    async def _guarded(self, url: str, call: Any) -> Any:
        """Run a provider call through the breaker of its host (when breakers are configured)."""
        if self.breakers is None:
            return await call()
        from server.infra.breaker import CircuitOpen

        try:
            return await self.breakers.call(f"oauth:{httpx.URL(url).host}", call,
                                            is_failure=lambda exc: isinstance(exc, ProviderError))
        except CircuitOpen:
            raise ProviderError("the provider is unavailable; try again shortly") from None

    async def _get_json(self, url: str) -> Any:
        async def call() -> Any:
            try:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.get(url, headers={"Accept": "application/json"})
                    response.raise_for_status()
                    return response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ProviderError(f"GET {url}: {exc.__class__.__name__}") from None

        return await self._guarded(url, call)

    async def endpoints(self, provider: Provider) -> Endpoints:
        if not provider.openid:
            assert provider.authorize_url and provider.token_url
            return Endpoints(provider.authorize_url, provider.token_url)
        assert provider.discovery_url
        cached = self._metadata.get(provider.discovery_url)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        document = await self._get_json(provider.discovery_url)
        try:
            algorithms = tuple(a for a in document.get("id_token_signing_alg_values_supported", ["RS256"])
                               if a in ASYMMETRIC_ALGS) or ("RS256",)
            endpoints = Endpoints(str(document["authorization_endpoint"]), str(document["token_endpoint"]),
                                  str(document["issuer"]), str(document["jwks_uri"]), algorithms)
        except (KeyError, TypeError, AttributeError):
            raise ProviderError("discovery document lacks required fields") from None
        self._metadata[provider.discovery_url] = (time.monotonic() + METADATA_TTL, endpoints)
        return endpoints

    async def authorization_url(self, provider: Provider, redirect_uri: str, *, state: str,
                                code_verifier: str, nonce: str | None) -> str:
        """The provider's consent URL with state, PKCE (S256) and, for OpenID Connect, the nonce."""
        endpoints = await self.endpoints(provider)
        extra = {"nonce": nonce} if nonce else {}
        async with self._oauth(provider, redirect_uri) as client:
            url, _ = client.create_authorization_url(endpoints.authorize_url, state=state,
                                                     code_verifier=code_verifier, **extra)
        return str(url)

    async def exchange_code(self, provider: Provider, redirect_uri: str, code: str,
                            code_verifier: str) -> dict[str, Any]:
        """Trade the authorization code (and the PKCE verifier) for tokens."""
        endpoints = await self.endpoints(provider)

        async def call() -> Any:
            try:
                async with self._oauth(provider, redirect_uri) as client:
                    return await client.fetch_token(endpoints.token_url, grant_type="authorization_code",
                                                    code=code, code_verifier=code_verifier,
                                                    redirect_uri=redirect_uri)
            except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:  # an error answer, network, not JSON
                raise ProviderError(f"token exchange failed: {exc.__class__.__name__}: {exc}") from None

        token = await self._guarded(endpoints.token_url, call)
        if not isinstance(token, dict) or not token.get("access_token"):
            raise ProviderError("token response without an access token")
        return dict(token)

    async def user(self, provider: Provider, token: dict[str, Any]) -> dict[str, Any]:
        """The profile from the provider's user endpoint (Discord's `/api/users/@me`)."""
        assert provider.user_url
        user_url = provider.user_url

        async def call() -> Any:
            try:
                async with AsyncOAuth2Client(client_id=provider.client_id, token=token,
                                             timeout=self.timeout) as client:
                    response = await client.get(user_url, headers={"Accept": "application/json"})
                    response.raise_for_status()
                    return response.json()
            except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:
                raise ProviderError(f"user endpoint failed: {exc.__class__.__name__}") from None

        data = await self._guarded(user_url, call)
        if not isinstance(data, dict) or not data.get("id"):
            raise ProviderError("user endpoint answered without an id")
        return data

    async def key_set(self, provider: Provider, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys; `refresh` refetches (rate-limited) after an unknown key id."""
        endpoints = await self.endpoints(provider)
        assert endpoints.jwks_url
        cached = self._jwks.get(endpoints.jwks_url)
        now = time.monotonic()
        if cached is not None:
            age = now - cached[0]
            if age < METADATA_TTL and (not refresh or age < self.jwks_refetch_interval):
                return cached[1]
        document = await self._get_json(endpoints.jwks_url)
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, ValueError, KeyError, TypeError):
            raise ProviderError("the provider's key set is malformed") from None
        self._jwks[endpoints.jwks_url] = (now, keys)
        return keys
