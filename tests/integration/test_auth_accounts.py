"""Register -> login -> refresh -> logout, refresh-token reuse, cookie mode + CSRF, sessions."""

from __future__ import annotations

import pytest

from tests.support.accounts import PASSWORD, bearer, login, register
from tests.support.appserver import AppServer
from tests.support.smtp import SmtpServer, link_token


async def test_register_login_refresh_logout(auth_server: AppServer, smtp_server: SmtpServer) -> None:
    async with auth_server.client() as client:
        user = await register(client, "Steve")
        assert user["username"] == "Steve" and user["email"] == "steve@example.com"
        assert user["email_verified"] is False  # pending until the mailed link is opened
        assert "password_hash" not in user and "totp_secret" not in user

        tokens = await login(client, "steve")  # case-insensitive login by username, at once
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
        # A pending address does not sign in: it may be anyone's. Once confirmed, it does.
        pending = await client.post("/api/auth/login", json={"login": "steve@example.com", "password": PASSWORD})
        assert pending.status_code == 401 and pending.json()["error"]["code"] == "invalid_credentials"
        mail = await smtp_server.wait_for("steve@example.com", "Confirm your Vonix email")
        assert (await client.post("/api/auth/email/verify", json={"token": link_token(mail)})).status_code == 204
        by_email = await login(client, "STEVE@example.com")
        assert by_email["user"]["id"] == user["id"] and by_email["user"]["email_verified"] is True

        me = await client.get("/api/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200 and me.json()["username"] == "Steve"

        refreshed = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        new = refreshed.json()
        assert new["refresh_token"] != tokens["refresh_token"]
        assert (await client.get("/api/auth/me", headers=bearer(new["access_token"]))).status_code == 200

        logout = await client.post("/api/auth/logout", headers=bearer(new["access_token"]))
        assert logout.status_code == 204
        after = await client.get("/api/auth/me", headers=bearer(new["access_token"]))
        assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_token"
        # the other session (logged in by email) is untouched
        assert (await client.get("/api/auth/me", headers=bearer(by_email["access_token"]))).status_code == 200


async def test_reused_refresh_token_revokes_the_family(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Alex")
        first = await login(client, "alex")
        second = (await client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()

        replay = await client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401
        assert replay.json()["error"]["code"] == "refresh_token_reused"
        # the whole family is dead: the legitimate newer tokens too
        later = await client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert later.status_code == 401
        me = await client.get("/api/auth/me", headers=bearer(second["access_token"]))
        assert me.status_code == 401
        assert (await client.post("/api/auth/refresh", json={"refresh_token": "garbage-token-xyz"})).status_code == 401


async def test_duplicate_username_any_case_is_409(auth_server: AppServer) -> None:
    """Usernames are public (profiles show them), so a taken one is refused; emails never are
    (tests/integration/test_auth_enumeration.py)."""
    async with auth_server.client() as client:
        await register(client, "Notch")
        again = await client.post("/api/auth/register", json={
            "username": "nOtCh", "email": "other@example.com", "password": PASSWORD})
        email = await client.post("/api/auth/register", json={
            "username": "Jeb", "email": "NOTCH@example.com", "password": PASSWORD})
    assert again.status_code == 409 and again.json()["error"]["code"] == "username_taken"
    assert email.status_code == 201 and email.json()["user"]["username"] == "Jeb"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"username": "ab", "email": "a@example.com", "password": PASSWORD}, "username", "string_pattern_mismatch"),
        ({"username": "valid_1", "email": "not-an-email", "password": PASSWORD}, "email", "string_pattern_mismatch"),
        ({"username": "valid_1", "email": "a@example.com", "password": "short"}, "password", "password_too_short"),
        ({"username": "valid_1", "email": "a@example.com", "password": "password123"}, "password",
         "password_too_common"),
        ({"username": "valid_1", "email": "a@example.com"}, "password", "missing"),
    ],
)
async def test_registration_validation_is_field_level(
    app_server: AppServer, body: dict[str, str], field: str, code: str
) -> None:
    async with app_server.client() as client:
        response = await client.post("/api/auth/register", json=body)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert {"field": field, "code": code} in [{"field": d["field"], "code": d["code"]} for d in details]


async def test_cookie_mode_requires_csrf_for_state_changes(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Cookie_Fan")
        response = await client.post("/api/auth/login", json={
            "login": "cookie_fan", "password": PASSWORD, "mode": "cookie"})
        assert response.status_code == 200
        body = response.json()
        assert "access_token" not in body and "refresh_token" not in body
        cookies = {c.name: c for c in client.cookies.jar}
        assert cookies["vonix_access"].has_nonstandard_attr("HttpOnly")
        assert cookies["vonix_refresh"].path == "/api/auth"
        assert not cookies["vonix_csrf"].has_nonstandard_attr("HttpOnly")

        assert (await client.get("/api/auth/me")).status_code == 200  # safe method: no CSRF needed
        forged = await client.post("/api/auth/logout")
        assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf_failed"
        wrong = await client.post("/api/auth/logout", headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        refreshed = await client.post("/api/auth/refresh")
        assert refreshed.status_code == 200 and "access_token" not in refreshed.json()
        csrf = client.cookies.get("vonix_csrf")
        ok = await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 204
        assert (await client.get("/api/auth/me")).status_code == 401


async def test_sessions_list_and_revoke(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Herobrine")
        phone = await login(client, "herobrine")
        laptop = (await client.post("/api/auth/login", json={"login": "herobrine", "password": PASSWORD},
                                    headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0)"})).json()
        listing = await client.get("/api/auth/sessions", headers=bearer(phone["access_token"]))
        sessions = listing.json()["sessions"]
        assert len(sessions) == 2
        current = [s for s in sessions if s["current"]]
        other = next(s for s in sessions if not s["current"])
        assert len(current) == 1 and other["device"] == "Windows"
        assert {"id", "device", "ip", "user_agent", "created_at", "last_active_at"} <= set(other)

        revoke = await client.delete(f"/api/auth/sessions/{other['id']}", headers=bearer(phone["access_token"]))
        assert revoke.status_code == 204
        assert (await client.get("/api/auth/me", headers=bearer(laptop["access_token"]))).status_code == 401
        missing = await client.delete(f"/api/auth/sessions/{other['id']}", headers=bearer(phone["access_token"]))
        assert missing.status_code == 404

        third = await login(client, "herobrine")
        others = await client.delete("/api/auth/sessions", headers=bearer(phone["access_token"]))
        assert others.json() == {"revoked": 1}
        assert (await client.get("/api/auth/me", headers=bearer(third["access_token"]))).status_code == 401
        assert (await client.get("/api/auth/me", headers=bearer(phone["access_token"]))).status_code == 200


async def test_bearer_garbage_is_401_with_error_shape(app_server: AppServer) -> None:
    async with app_server.client() as client:
        response = await client.get("/api/auth/me", headers=bearer("not.a.jwt"))
        anonymous = await client.get("/api/auth/me")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"


async def test_verified_email_can_be_required(backend: dict[str, str], smtp_server) -> None:
    from tests.conftest import make_settings
    from tests.support.smtp import link_token

    async with AppServer(make_settings(SMTP_URL=smtp_server.url, REQUIRE_VERIFIED_EMAIL="true", **backend)) as server:
        async with server.client() as client:
            await register(client, "Pending_Pat")
            refused = await client.post("/api/auth/login", json={"login": "pending_pat", "password": PASSWORD})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "email_unverified"
            mail = await smtp_server.wait_for("pending_pat@example.com", "Confirm")
            assert (await client.post("/api/auth/email/verify", json={"token": link_token(mail)})).status_code == 204
            assert "access_token" in await login(client, "pending_pat")
