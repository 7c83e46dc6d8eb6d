"""OAuth sign-in, sign-up, linking and unlinking, over real HTTP against a provider the test runs.

Every hop is followed by hand (app login -> provider authorize -> app callback) so each redirect,
cookie and refusal is asserted. The provider checks client credentials, single-use codes and the
PKCE verifier; the app checks state, the ID token's signature against the JWKS, and the nonce.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pyotp
import pytest
import sqlalchemy as sa

from server.auth.oauth_providers import KNOWN
from server.db.tables import audit_log, oauth_accounts, users
from server.db.types import utcnow
from server.routes.oauth import ProviderName
from tests.conftest import make_settings
from tests.support.appserver import AppServer
from tests.support.contract import assert_conforms
from tests.support.oauth_provider import LocalProvider, rotated_key
from tests.support.services import free_port

PASSWORD = "correct horse battery staple 42"
embedded_only = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


@pytest.fixture
async def provider() -> AsyncIterator[LocalProvider]:
    async with LocalProvider() as local:
        yield local


@pytest.fixture
async def vonix(backend: dict[str, Any], provider: LocalProvider) -> AsyncIterator[AppServer]:
    port = free_port()
    settings = make_settings(**backend, **provider.settings(), PUBLIC_URL=f"http://127.0.0.1:{port}")
    async with AppServer(settings, port=port) as server:
        yield server
        provider.request_stop()  # both servers wind down together


def browser() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10, follow_redirects=False)


@dataclass
class Hops:
    provider: str
    login: httpx.Response
    authorize: httpx.Response
    callback: httpx.Response

    @property
    def location(self) -> str:
        return self.callback.headers["location"]

    @property
    def cookies_set(self) -> list[str]:
        return self.callback.headers.get_list("set-cookie")


def _edit_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def oauth_flow(http: httpx.AsyncClient, server: AppServer, name: str, next_path: str | None = None, *,
                     edit_authorize: Callable[[str], str] | None = None,
                     edit_callback: Callable[[str], str] | None = None) -> Hops:
    params = {"next": next_path} if next_path is not None else None
    login = await http.get(f"{server.base_url}/api/auth/oauth/{name}/login", params=params)
    assert login.status_code == 302, login.text
    to_provider = login.headers["location"]
    authorize = await http.get(edit_authorize(to_provider) if edit_authorize else to_provider)
    assert authorize.status_code == 302, authorize.text
    back = authorize.headers["location"]
    assert back.startswith(f"{server.base_url}/api/auth/oauth/{name}/callback?")
    callback = await http.get(edit_callback(back) if edit_callback else back)
    assert callback.status_code == 303, callback.text
    return Hops(name, login, authorize, callback)


def assert_refused(hops: Hops, code: str) -> None:
    assert hops.location == f"/?oauth_error={code}"
    assert not any(c.startswith("vonix_access=") for c in hops.cookies_set)
    # the one-time state cookie is cleared either way
    assert any(c.startswith(f'vonix_oauth_{hops.provider}=""') for c in hops.cookies_set)


async def me(http: httpx.AsyncClient, server: AppServer) -> dict[str, Any]:
    response = await http.get(f"{server.base_url}/api/auth/me")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def register(http: httpx.AsyncClient, server: AppServer, username: str, *, verified: bool = False,
                   sign_in: bool = False) -> int:
    email = f"{username.lower()}@example.com"
    created = await http.post(f"{server.base_url}/api/auth/register",
                              json={"username": username, "email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    user_id = int(created.json()["user"]["id"])
    if verified:  # as opening the mailed link does: the pending address becomes the account's own
        await server.resources.db.execute("test.verify", users.update().where(users.c.id == user_id).values(
            email=users.c.pending_email, pending_email=None, email_verified_at=utcnow()))
    if sign_in:
        login = await http.post(f"{server.base_url}/api/auth/login",
                                json={"login": username, "password": PASSWORD, "mode": "cookie"})
        assert login.status_code == 200, login.text
    return user_id


async def audit_actions(server: AppServer) -> list[str]:
    rows = await server.resources.db.fetch_all("test.audit", sa.select(audit_log.c.action).where(
        audit_log.c.action.like("oauth.%")).order_by(audit_log.c.id))
    return [r["action"] for r in rows]


async def links_of(server: AppServer, user_id: int) -> list[str]:
    rows = await server.resources.db.fetch_all("test.links", sa.select(oauth_accounts.c.provider).where(
        oauth_accounts.c.user_id == user_id).order_by(oauth_accounts.c.provider))
    return [r["provider"] for r in rows]


def csrf(http: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": http.cookies["vonix_csrf"]}


# --- full flows (both backends) -------------------------------------------------------------------

async def test_google_sign_up_then_sign_in_again(vonix: AppServer, provider: LocalProvider) -> None:
    provider.consent_as(sub="g-1", email="Alex@Example.com", name="Alex Example")
    async with browser() as http:
        hops = await oauth_flow(http, vonix, "google", "/rooms/general?tab=live")

        # The way out: state, nonce and an S256 PKCE challenge; the state cookie is HttpOnly and Lax.
        sent = provider.authorize_requests[-1]
        assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) == 43
        assert sent["nonce"] and sent["state"] and "openid" in sent["scope"].split()
        assert sent["redirect_uri"] == f"{vonix.base_url}/api/auth/oauth/google/callback"
        state_cookie = hops.login.headers["set-cookie"]
        assert state_cookie.startswith("vonix_oauth_google=")
        assert "HttpOnly" in state_cookie and "SameSite=lax" in state_cookie
        assert "Path=/api/auth/oauth/google" in state_cookie and "Max-Age=600" in state_cookie
        assert sent["state"] not in state_cookie and sent["nonce"] not in state_cookie  # encrypted

        # The way back: the code was exchanged with the verifier; cookie-mode session, then `next`.
        assert provider.rejections == []
        assert len(provider.token_requests[-1]["code_verifier"]) >= 43
        assert hops.location == "/rooms/general?tab=live"
        assert {c.split("=")[0] for c in hops.cookies_set} >= {"vonix_access", "vonix_refresh", "vonix_csrf"}
        user = await me(http, vonix)
        assert user["username"] == "Alex_Example" and user["display_name"] == "Alex Example"
        assert user["email"] == "alex@example.com" and user["email_verified"] is True
        row = await vonix.resources.db.fetch_one("test.user", sa.select(users).where(users.c.id == user["id"]))
        assert row["password_hash"] is None

    async with browser() as http:  # later, another device: the same provider account signs in
        hops = await oauth_flow(http, vonix, "google")
        assert hops.location == "/"
        assert (await me(http, vonix))["id"] == user["id"]

    provider.consent_as(sub="g-2", email="alex.two@example.com", name="Alex Example")
    async with browser() as http:  # a second person with the same name gets a suffixed username
        await oauth_flow(http, vonix, "google")
        assert re.fullmatch(r"Alex_Example\d+", (await me(http, vonix))["username"])
    assert await audit_actions(vonix) == ["oauth.signup", "oauth.login", "oauth.signup"]


async def test_discord_sign_up_and_sign_in(vonix: AppServer, provider: LocalProvider) -> None:
    provider.consent_as(sub="81234567890", username="blaze.runner", name="Blaze", email="blaze@example.com",
                        email_verified=False, avatar="abc123")
    async with browser() as http:
        hops = await oauth_flow(http, vonix, "discord", "/friends")
        sent = provider.authorize_requests[-1]
        assert sent["flavor"] == "discord" and sent["scope"] == "identify email"
        assert sent["code_challenge_method"] == "S256" and "nonce" not in sent
        assert provider.rejections == [] and provider.token_requests[-1]["code_verifier"]
        assert hops.location == "/friends"
        user = await me(http, vonix)
        assert user["username"] == "blaze_runner" and user["display_name"] == "Blaze"
        assert user["avatar_url"] == "https://cdn.discordapp.com/avatars/81234567890/abc123.png"
        assert user["email"] == "blaze@example.com" and user["email_verified"] is False

        accounts = await http.get(f"{vonix.base_url}/api/auth/oauth/accounts")
        listed = accounts.json()
        assert [a["provider"] for a in listed["accounts"]] == ["discord"]
        assert listed["available"] == ["google", "discord"]
        assert listed["accounts"][0]["email"] == "blaze@example.com"
        async with vonix.client() as api:  # a linked account, as documented
            await assert_conforms(api, accounts, "GET", "/api/auth/oauth/accounts")
        assert get_args(ProviderName) == KNOWN  # the documented provider names are the known ones

    async with browser() as http:
        await oauth_flow(http, vonix, "discord")
        assert (await me(http, vonix))["id"] == user["id"]
    assert await audit_actions(vonix) == ["oauth.signup", "oauth.login"]

    # A suspended account cannot sign in through its provider either.
    await vonix.resources.db.execute("test.suspend", users.update().where(users.c.id == user["id"]).values(
        status="suspended"))
    async with browser() as http:
        assert_refused(await oauth_flow(http, vonix, "discord"), "account_disabled")


async def test_link_while_signed_in_then_unlink(vonix: AppServer, provider: LocalProvider) -> None:
    provider.consent_as(sub="g-sam", email="sam.elsewhere@example.com", name="Sam G")
    async with browser() as http:
        sam = await register(http, vonix, "sam", sign_in=True)
        hops = await oauth_flow(http, vonix, "google", "/settings")
        assert hops.location == "/settings"
        assert not any(c.startswith("vonix_access=") for c in hops.cookies_set)  # same session goes on
        assert (await me(http, vonix))["id"] == sam
        assert await links_of(vonix, sam) == ["google"]

        # A second Google account cannot be linked to the same user.
        provider.consent_as(sub="g-sam-2", email="sam.third@example.com")
        assert_refused(await oauth_flow(http, vonix, "google"), "already_linked")

        # Unlinking is a cookie-authenticated DELETE: it needs the CSRF header. Sam has a password.
        no_csrf = await http.delete(f"{vonix.base_url}/api/auth/oauth/google")
        assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf_failed"

    provider.consent_as(sub="g-sam", email="sam.elsewhere@example.com", name="Sam G")
    async with browser() as http:  # the linked account now signs Sam in from anywhere
        await oauth_flow(http, vonix, "google")
        assert (await me(http, vonix))["id"] == sam
        gone = await http.delete(f"{vonix.base_url}/api/auth/oauth/google", headers=csrf(http))
        assert gone.status_code == 204
        assert (await http.get(f"{vonix.base_url}/api/auth/oauth/accounts")).json()["accounts"] == []
    assert await links_of(vonix, sam) == []
    assert await audit_actions(vonix) == ["oauth.linked", "oauth.login", "oauth.unlinked"]


async def test_link_by_verified_email_but_never_to_an_unverified_one(
    vonix: AppServer, provider: LocalProvider
) -> None:
    async with browser() as http:
        vera = await register(http, vonix, "vera", verified=True)
        uma = await register(http, vonix, "uma")
        pia = await register(http, vonix, "pia")  # claimed pia@example.com at sign-up, never confirmed it
    # Uma signed up before migration 0017: her unconfirmed address sits in users.email.
    await vonix.resources.db.execute("test.legacy", users.update().where(users.c.id == uma).values(
        email=users.c.pending_email, pending_email=None))

    provider.consent_as(sub="g-vera", email="VERA@example.com", name="Vera")
    async with browser() as http:
        await oauth_flow(http, vonix, "google")
        assert (await me(http, vonix))["id"] == vera
    assert await links_of(vonix, vera) == ["google"]

    # Uma never proved she owns uma@example.com: whoever signs in at Google with it may be the owner.
    provider.consent_as(sub="g-uma", email="uma@example.com", email_verified=True)
    async with browser() as http:
        assert_refused(await oauth_flow(http, vonix, "google"), "email_unverified_conflict")
    # ...and a provider that did not verify the address cannot claim a verified account either. It is
    # not told that the address has an account (anyone can type any address at Discord): it gets a
    # new account of its own, where the address is only pending and can never be confirmed.
    provider.consent_as(sub="g-not-vera", email="vera@example.com", email_verified=False)
    async with browser() as http:
        hops = await oauth_flow(http, vonix, "discord")
        assert hops.location == "/"
        other = await me(http, vonix)
        assert other["id"] not in (vera, uma) and other["email"] == "vera@example.com"
        assert other["email_verified"] is False
    # A pending claim does not block the address's owner, verified by the provider: Pia's sign-up
    # never confirmed pia@example.com, so Google's verified pia@example.com signs up on its own.
    provider.consent_as(sub="g-pia", email="pia@example.com", email_verified=True)
    async with browser() as http:
        await oauth_flow(http, vonix, "google")
        owner = await me(http, vonix)
        assert owner["id"] != pia and owner["email"] == "pia@example.com" and owner["email_verified"] is True
    assert await links_of(vonix, uma) == [] and await links_of(vonix, vera) == ["google"]
    assert await links_of(vonix, pia) == []
    assert await audit_actions(vonix) == ["oauth.linked", "oauth.signup", "oauth.signup"]


async def test_unlink_refused_for_the_last_way_to_sign_in(vonix: AppServer, provider: LocalProvider) -> None:
    provider.consent_as(sub="g-olive", email="olive@example.com", name="Olive")
    async with browser() as http:
        await oauth_flow(http, vonix, "google")
        olive = (await me(http, vonix))["id"]
        last = await http.delete(f"{vonix.base_url}/api/auth/oauth/google", headers=csrf(http))
        assert last.status_code == 409
        assert last.json()["error"]["code"] == "last_login_method" and last.json()["error"]["request_id"]

        provider.consent_as(sub="d-olive", email="olive@example.com", username="olive")
        await oauth_flow(http, vonix, "discord")  # linked while signed in
        assert await links_of(vonix, olive) == ["discord", "google"]
        assert (await http.delete(f"{vonix.base_url}/api/auth/oauth/google", headers=csrf(http))).status_code == 204
        again = await http.delete(f"{vonix.base_url}/api/auth/oauth/discord", headers=csrf(http))
        assert again.status_code == 409 and again.json()["error"]["code"] == "last_login_method"
        missing = await http.delete(f"{vonix.base_url}/api/auth/oauth/google", headers=csrf(http))
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_linked"
    assert await links_of(vonix, olive) == ["discord"]


# --- refusals (the database does not matter: embedded only) ----------------------------------------

@embedded_only
async def test_tampered_or_missing_state_is_refused(
    vonix: AppServer, provider: LocalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with browser() as http:
        hops = await oauth_flow(http, vonix, "google", edit_callback=lambda u: _edit_query(u, state="forged"))
        assert_refused(hops, "invalid_state")

    async with browser() as victim, browser() as attacker:
        # A callback carried into another browser (no state cookie there) is refused.
        login = await attacker.get(f"{vonix.base_url}/api/auth/oauth/google/login")
        back = (await attacker.get(login.headers["location"])).headers["location"]
        refused = await victim.get(back)
        assert refused.status_code == 303 and refused.headers["location"] == "/?oauth_error=invalid_state"

        # A state cookie that was altered does not decrypt: refused.
        victim.cookies.set("vonix_oauth_google", login.cookies["vonix_oauth_google"][:-4] + "AAAA",
                           domain="127.0.0.1", path="/api/auth/oauth/google")
        refused = await victim.get(back)
        assert refused.headers["location"] == "/?oauth_error=invalid_state"

    assert provider.token_requests == []  # no code was ever exchanged
    refusals = [r for r in caplog.records if "oauth_refused" in r.getMessage()]
    assert len(refusals) == 3 and all(r.levelno == logging.WARNING for r in refusals)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@embedded_only
async def test_id_token_with_wrong_nonce_or_foreign_signature_is_refused(
    vonix: AppServer, provider: LocalProvider
) -> None:
    provider.wrong_nonce = True
    async with browser() as http:
        assert_refused(await oauth_flow(http, vonix, "google"), "invalid_id_token")
    provider.wrong_nonce = False
    # Signed by a key the JWKS does not hold: under the published key id, and under an unknown one.
    for foreign_key in ("same_kid", "unknown_kid"):
        provider.foreign_key = foreign_key
        async with browser() as http:
            assert_refused(await oauth_flow(http, vonix, "google"), "invalid_id_token")
    count = await vonix.resources.db.fetch_val("test.count", sa.select(sa.func.count()).select_from(users))
    assert count == 0
    provider.foreign_key = None  # the provider's real key is accepted by the same app
    async with browser() as http:
        assert (await oauth_flow(http, vonix, "google")).location == "/"

    # The provider rotates its key: a token under the new key id makes the app fetch the key set
    # again (at most every few seconds in production; at once here) and the sign-in goes through.
    vonix.app.state.oauth.client.jwks_refetch_interval = 0
    provider.key = rotated_key()
    async with browser() as http:
        assert (await oauth_flow(http, vonix, "google")).location == "/"


@embedded_only
async def test_pkce_verifier_is_checked_by_the_provider(vonix: AppServer, provider: LocalProvider) -> None:
    # Swap the challenge on the way to the provider: the app's verifier then cannot match it.
    other = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    for name in ("google", "discord"):
        async with browser() as http:
            hops = await oauth_flow(http, vonix, name, edit_authorize=lambda u: _edit_query(u, code_challenge=other))
            assert_refused(hops, "provider_error")
    assert provider.rejections == ["token: PKCE code_verifier does not match the challenge"] * 2
    assert all(len(r["code_verifier"]) >= 43 for r in provider.token_requests)

    # A user who does not consent comes back with error=access_denied: refused, nothing exchanged.
    provider.deny = True
    async with browser() as http:
        assert_refused(await oauth_flow(http, vonix, "discord"), "provider_error")
    assert len(provider.token_requests) == 2


@embedded_only
async def test_next_cannot_leave_the_site(vonix: AppServer, provider: LocalProvider) -> None:
    for attempt in ("//evil.example/phish", "https://evil.example/", "/\\evil.example", "javascript:alert(1)",
                    "/%0d%0aSet-Cookie:x=1"):
        async with browser() as http:
            hops = await oauth_flow(http, vonix, "google", attempt)
            location = hops.location
            assert location.startswith("/") and not location.startswith("//"), location
            assert "evil" not in location and "\n" not in location and "\r" not in location
    async with browser() as http:
        assert (await oauth_flow(http, vonix, "google", "//evil.example")).location == "/"


@embedded_only
async def test_two_factor_account_still_needs_its_code(vonix: AppServer, provider: LocalProvider) -> None:
    async with browser() as http:
        tina = await register(http, vonix, "tina", verified=True)
        login = await http.post(f"{vonix.base_url}/api/auth/login", json={"login": "tina", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        secret = (await http.post(f"{vonix.base_url}/api/auth/2fa/enroll", headers=headers)).json()["secret"]
        confirm = await http.post(f"{vonix.base_url}/api/auth/2fa/confirm", headers=headers,
                                  json={"code": pyotp.TOTP(secret).now()})
        recovery = confirm.json()["recovery_codes"]

    provider.consent_as(sub="g-tina", email="tina@example.com")
    async with browser() as http:
        hops = await oauth_flow(http, vonix, "google", "/inbox")
        assert hops.location.startswith("/inbox#mfa_ticket=")
        assert not any(c.startswith("vonix_access=") for c in hops.cookies_set)
        ticket = hops.location.split("#mfa_ticket=", 1)[1]
        done = await http.post(f"{vonix.base_url}/api/auth/login/mfa",
                               json={"mfa_ticket": ticket, "code": recovery[0], "mode": "cookie"})
        assert done.status_code == 200, done.text
        assert (await me(http, vonix))["id"] == tina


@embedded_only
async def test_unconfigured_or_unreachable_provider(backend: dict[str, Any]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"  # nothing listens there
    settings = make_settings(**backend, OAUTH_GOOGLE_CLIENT_ID="vonix", OAUTH_GOOGLE_DISCOVERY_URL=dead,
                             OAUTH_TIMEOUT=2)
    async with AppServer(settings) as server, server.client() as http:
        off = await http.get("/api/auth/oauth/discord/login")
        assert off.status_code == 404 and off.json()["error"]["code"] == "not_configured"
        unknown = await http.get("/api/auth/oauth/myspace/login")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_provider"
        late = await http.get("/api/auth/oauth/discord/callback?code=x&state=y")
        assert late.status_code == 303 and late.headers["location"] == "/?oauth_error=not_configured"
        down = await http.get("/api/auth/oauth/google/login")
        assert down.status_code == 303 and down.headers["location"] == "/?oauth_error=provider_error"
        anonymous = await http.get("/api/auth/oauth/accounts")
        assert anonymous.status_code == 401
