"""Password reset through a real SMTP server: single use, expiry, every old session revoked."""

from __future__ import annotations

from datetime import timedelta

from server.db.tables import user_tokens
from server.db.types import utcnow
from tests.support.accounts import bearer, login, register
from tests.support.appserver import AppServer
from tests.support.smtp import SmtpServer, link_token

NEW_PASSWORD = "a brand new passphrase 77"


async def test_reset_flow(auth_server: AppServer, smtp_server: SmtpServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Forgetful")
        verify = await smtp_server.wait_for("forgetful@example.com", "Confirm your Vonix email")
        verified = await client.post("/api/auth/email/verify", json={"token": link_token(verify)})
        assert verified.status_code == 204
        old = await login(client, "forgetful")

        unknown = await client.post("/api/auth/password/forgot", json={"email": "ghost@example.com"})
        known = await client.post("/api/auth/password/forgot", json={"email": "Forgetful@Example.com"})
        assert unknown.status_code == known.status_code == 202
        assert unknown.json() == known.json()

        mail = await smtp_server.wait_for("forgetful@example.com", "Reset your Vonix password")
        token = link_token(mail)
        assert "/reset-password?token=" in mail.get_payload()
        reset = await client.post("/api/auth/password/reset", json={"token": token, "password": NEW_PASSWORD})
        assert reset.status_code == 204
        again = await client.post("/api/auth/password/reset", json={"token": token, "password": NEW_PASSWORD})
        assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_reset_token"

        assert (await client.get("/api/auth/me", headers=bearer(old["access_token"]))).status_code == 401
        stale = await client.post("/api/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert stale.status_code == 401
        assert (await client.post("/api/auth/login", json={"login": "forgetful", "password":
                                                           "correct horse battery staple 42"})).status_code == 401
        assert "access_token" in await login(client, "forgetful", NEW_PASSWORD)
    assert not [m for m in smtp_server.messages if m["To"] == "ghost@example.com"]


async def test_expired_reset_token_fails(auth_server: AppServer, smtp_server: SmtpServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Slowpoke")
        verify = await smtp_server.wait_for("slowpoke@example.com", "Confirm your Vonix email")
        assert (await client.post("/api/auth/email/verify", json={"token": link_token(verify)})).status_code == 204
        await client.post("/api/auth/password/forgot", json={"email": "slowpoke@example.com"})
        token = link_token(await smtp_server.wait_for("slowpoke@example.com", "Reset"))
        await auth_server.resources.db.execute("test.expire", user_tokens.update().where(
            user_tokens.c.purpose == "reset").values(expires_at=utcnow() - timedelta(seconds=1)))
        expired = await client.post("/api/auth/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "invalid_reset_token"
