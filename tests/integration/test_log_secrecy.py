"""Passwords, tokens, TOTP secrets and reset links never reach the logs, even at DEBUG."""

from __future__ import annotations

import logging
import time

import pyotp
import pytest

from tests.support.accounts import PASSWORD, bearer, login, register
from tests.support.appserver import AppServer
from tests.support.smtp import SmtpServer, body_of, link_token


async def test_secrets_never_logged(
    auth_server: AppServer, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [PASSWORD]
    async with auth_server.client() as client:
        await register(client, "Quiet_Quinn")
        verify = await smtp_server.wait_for("quiet_quinn@example.com", "Confirm")  # reset mails need it confirmed
        secrets.append(link_token(verify))
        await client.post("/api/auth/email/verify", json={"token": link_token(verify)})
        tokens = await login(client, "quiet_quinn")
        secrets += [tokens["access_token"], tokens["refresh_token"]]
        refreshed = (await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).json()
        secrets += [refreshed["access_token"], refreshed["refresh_token"]]
        headers = bearer(refreshed["access_token"])
        enrol = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()
        secrets.append(enrol["secret"])
        code = pyotp.TOTP(enrol["secret"]).at(time.time() - 30)
        recovery = (await client.post("/api/auth/2fa/confirm", json={"code": code}, headers=headers)).json()
        secrets += recovery["recovery_codes"]
        await client.post("/api/auth/login", json={"login": "quiet_quinn", "password": "a wrong password 9"})
        await client.post("/api/auth/password/forgot", json={"email": "quiet_quinn@example.com"})
        mail = await smtp_server.wait_for("quiet_quinn@example.com", "Reset")
        reset_token = link_token(mail)
        link = next(line for line in body_of(mail).splitlines() if "token=" in line)
        secrets += [reset_token, link]
        new_password = "another fine passphrase 5"
        secrets.append(new_password)
        await client.post("/api/auth/password/reset", json={"token": reset_token, "password": new_password})
        await client.post("/api/auth/refresh", json={"refresh_token": refreshed["refresh_token"]})

    text = caplog.text + "\n".join(str(r.msg) for r in caplog.records)
    assert "session.created" in text and "mail_sent" in text  # the flows did log
    for secret in secrets:
        assert secret not in text, f"a secret leaked into the logs: {secret[:6]}…"
