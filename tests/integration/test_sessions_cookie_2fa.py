"""Issue 14 account items: sessions named by browser and OS, the readable `vonix_session` cookie,
and 2FA codes refused with a reason (wrong, expired, clock ahead, just used)."""

from __future__ import annotations

import base64
import json
import time
from http.cookies import SimpleCookie

import httpx
import pyotp

from tests.support.accounts import PASSWORD, bearer, login, register, totp_code
from tests.support.appserver import AppServer

CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/120.0.6099.144 Mobile Safari/537.36")
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.2 Mobile/15E148 Safari/604.1")
REUSED = "This code was just used; wait for the next one (codes change every 30 seconds)."


def set_cookies(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    """Each Set-Cookie of the response by name: value and attributes (lower-cased names)."""
    out: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            attrs: dict[str, str | bool] = {"value": morsel.value}
            for key in ("path", "max-age", "expires", "samesite"):
                if morsel[key]:
                    attrs[key] = morsel[key]
            attrs["httponly"] = "httponly" in header.lower()
            out[name] = attrs
    return out


def jwt_exp(token: str) -> int:
    payload = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


async def test_sessions_show_browser_and_os(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Many_Devices")
        tokens = {}
        for agent in (CHROME_ANDROID, FIREFOX_WINDOWS, SAFARI_IPHONE):
            response = await client.post("/api/auth/login", json={"login": "many_devices", "password": PASSWORD},
                                         headers={"User-Agent": agent})
            assert response.status_code == 200
            tokens[agent] = response.json()["access_token"]
        listing = await client.get("/api/auth/sessions", headers=bearer(tokens[FIREFOX_WINDOWS]))
    assert listing.status_code == 200
    by_agent = {s["user_agent"]: s for s in listing.json()["sessions"]}
    named = {agent: (s["browser"], s["os"], s["device"]) for agent, s in by_agent.items()}
    assert named == {
        CHROME_ANDROID: ("Chrome 120", "Android 14", "Chrome on Android"),
        FIREFOX_WINDOWS: ("Firefox 121", "Windows", "Firefox on Windows"),
        SAFARI_IPHONE: ("Safari 17", "iOS 17", "Safari on iPhone"),
    }
    assert [s["current"] for s in by_agent.values()].count(True) == 1 and by_agent[FIREFOX_WINDOWS]["current"]
    for session in by_agent.values():
        assert session["last_active_at"] and session["created_at"]
    # The label is stored with the session too (what admin views and old clients read).
    from server.db.tables import sessions

    rows = await auth_server.resources.db.fetch_all("test.sessions", sessions.select())
    assert {r["device"] for r in rows} == {"Chrome on Android", "Firefox on Windows", "Safari on iPhone"}


async def test_session_cookie_tells_the_pwa_when_access_expires(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Cookie_Clara")
        # Bearer (token-mode) sign-in sets no cookies at all.
        token_mode = await client.post("/api/auth/login", json={"login": "cookie_clara", "password": PASSWORD})
        assert "vonix_session" not in set_cookies(token_mode)
        client.cookies.clear()

        signed_in = await client.post("/api/auth/login", json={
            "login": "cookie_clara", "password": PASSWORD, "mode": "cookie"})
        assert signed_in.status_code == 200
        cookies = set_cookies(signed_in)
        session = cookies["vonix_session"]
        assert session["httponly"] is False and session["path"] == "/"
        assert session["max-age"] == str(auth_server.settings.refresh_token_ttl)
        assert int(str(session["value"])) == jwt_exp(str(cookies["vonix_access"]["value"]))
        assert abs(int(str(session["value"])) - (time.time() + auth_server.settings.access_token_ttl)) < 30
        assert client.cookies.get("vonix_session") == session["value"]

        old_refresh = client.cookies.get("vonix_refresh", path="/api/auth")
        refreshed = await client.post("/api/auth/refresh")
        assert refreshed.status_code == 200
        after = set_cookies(refreshed)
        assert int(str(after["vonix_session"]["value"])) == jwt_exp(str(after["vonix_access"]["value"]))
        assert after["vonix_session"]["httponly"] is False

        # A refresh that fails (here: a replayed token, which also ends the session) clears the
        # cookies, so the next start knows it is signed out without asking.
        fresh_refresh = client.cookies.get("vonix_refresh", path="/api/auth")
        client.cookies.set("vonix_refresh", old_refresh, domain="127.0.0.1", path="/api/auth")
        replayed = await client.post("/api/auth/refresh")
        assert replayed.status_code == 401
        assert set_cookies(replayed)["vonix_session"].get("max-age") == "0"
        assert client.cookies.get("vonix_session") is None

        # Logout clears it along with the other auth cookies.
        again = await client.post("/api/auth/login", json={
            "login": "cookie_clara", "password": PASSWORD, "mode": "cookie"})
        assert again.status_code == 200 and fresh_refresh
        assert client.cookies.get("vonix_session") is not None
        out = await client.post("/api/auth/logout", headers={"X-CSRF-Token": client.cookies.get("vonix_csrf")})
        assert out.status_code == 204
        cleared = set_cookies(out)
        assert cleared["vonix_session"].get("max-age") == "0" and cleared["vonix_session"]["path"] == "/"
        assert client.cookies.get("vonix_session") is None



async def test_two_factor_codes_are_refused_with_a_reason(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Two_Step_Tia")
        headers = bearer((await login(client, "two_step_tia"))["access_token"])
        secret = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()["secret"]
        current = totp_code(secret, 0)
        wrong_code = next(c for c in ("000000", "111111", "222222") if c not in
                          {totp_code(secret, s) for s in range(-12, 13)})

        wrong = await client.post("/api/auth/2fa/confirm", json={"code": wrong_code}, headers=headers)
        assert wrong.status_code == 422
        error = wrong.json()["error"]
        assert error["message"] == "That code is not right."
        assert error["details"][0]["field"] == "code" and error["details"][0]["code"] == "wrong_code"
        assert "clock" in error["details"][0]["message"]

        expired = await client.post("/api/auth/2fa/confirm", json={"code": totp_code(secret, -5)}, headers=headers)
        assert expired.status_code == 422 and expired.json()["error"]["details"][0]["code"] == "code_expired"
        ahead = await client.post("/api/auth/2fa/confirm", json={"code": totp_code(secret, 5)}, headers=headers)
        assert ahead.status_code == 422 and ahead.json()["error"]["details"][0]["code"] == "clock_ahead"

        enabled = await client.post("/api/auth/2fa/confirm", json={"code": current}, headers=headers)
        assert enabled.status_code == 200
        recovery = enabled.json()["recovery_codes"]

        # Signing in with the code that just enabled 2FA: "just used", not "not valid".
        ticket = (await login(client, "two_step_tia"))["mfa_ticket"]
        reused = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": current})
        assert reused.status_code == 401
        assert reused.json()["error"]["code"] == "code_reused"
        assert reused.json()["error"]["message"] == REUSED

        bad = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": wrong_code})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_mfa_code"
        assert bad.json()["error"]["message"] == "That code is not right."
        assert bad.json()["error"]["details"][0]["code"] == "wrong_code"

        first = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": recovery[0]})
        assert first.status_code == 200
        burnt = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": recovery[0]})
        assert burnt.status_code == 401
        assert burnt.json()["error"]["details"][0]["code"] == "recovery_code_used"


async def test_confirming_with_a_code_already_used_says_so(auth_server: AppServer) -> None:
    from server.db.queries import users
    from server.db.tables import users as users_table

    async with auth_server.client() as client:
        await register(client, "Twice_Tom")
        headers = bearer((await login(client, "twice_tom"))["access_token"])
        secret = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()["secret"]
        totp = pyotp.TOTP(secret)
        step = int(time.time()) // totp.interval
        # The current time step was already claimed (as a code that just signed in would have).
        user = await users.by_username(auth_server.resources.db, "twice_tom")
        await auth_server.resources.db.execute("test.claim", users_table.update().where(
            users_table.c.id == user["id"]).values(totp_last_step=step + 1))
        refused = await client.post("/api/auth/2fa/confirm", json={"code": totp.at(step * totp.interval)},
                                    headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "code_reused"
    assert refused.json()["error"]["message"] == REUSED
    assert refused.json()["error"]["details"][0] == {"field": "code", "code": "code_reused", "message": REUSED}
