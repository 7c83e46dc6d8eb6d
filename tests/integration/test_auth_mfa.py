"""TOTP 2FA: enrol with a pyotp code, two-step login, single-use recovery codes, replay refused."""

from __future__ import annotations

from tests.support.accounts import PASSWORD, bearer, login, register, totp_code
from tests.support.appserver import AppServer


async def test_two_factor_lifecycle(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Secure_Sam")
        tokens = await login(client, "secure_sam")
        headers = bearer(tokens["access_token"])

        enrol = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()
        secret = enrol["secret"]
        assert enrol["otpauth_uri"].startswith("otpauth://totp/Vonix:Secure_Sam?")
        assert f"secret={secret}" in enrol["otpauth_uri"]
        assert enrol["qr_svg"].lstrip().startswith("<svg")

        wrong = await client.post("/api/auth/2fa/confirm", json={"code": "000000"}, headers=headers)
        assert wrong.status_code == 422
        confirm = await client.post("/api/auth/2fa/confirm", json={"code": totp_code(secret, -1)},
                                    headers=headers)
        assert confirm.status_code == 200
        recovery = confirm.json()["recovery_codes"]
        assert len(recovery) == 10 and len(set(recovery)) == 10

        # Step one: password gives a ticket, not tokens.
        first = await login(client, "secure_sam")
        assert first == {"mfa_required": True, "mfa_ticket": first["mfa_ticket"]}
        code = totp_code(secret, 0)
        ok = await client.post("/api/auth/login/mfa", json={"mfa_ticket": first["mfa_ticket"], "code": code})
        assert ok.status_code == 200 and "access_token" in ok.json()

        # The same code again (a replay) fails, even with a fresh ticket.
        again = await login(client, "secure_sam")
        replay = await client.post("/api/auth/login/mfa", json={"mfa_ticket": again["mfa_ticket"], "code": code})
        assert replay.status_code == 401 and replay.json()["error"]["code"] == "code_reused"
        assert "wait for the next one" in replay.json()["error"]["message"]

        # A recovery code works once.
        used = await client.post("/api/auth/login/mfa", json={"mfa_ticket": again["mfa_ticket"],
                                                              "code": recovery[0].upper()})
        assert used.status_code == 200
        third = await login(client, "secure_sam")
        reuse = await client.post("/api/auth/login/mfa", json={"mfa_ticket": third["mfa_ticket"],
                                                               "code": recovery[0]})
        assert reuse.status_code == 401

        # A forged ticket is refused.
        forged = await client.post("/api/auth/login/mfa", json={"mfa_ticket": third["mfa_ticket"] + "x",
                                                                "code": totp_code(secret, 1)})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_mfa_ticket"

        # Disabling needs the password and a code.
        session = bearer(ok.json()["access_token"])
        bad = await client.post("/api/auth/2fa/disable", json={"password": "wrong password!", "code": recovery[1]},
                                headers=session)
        assert bad.status_code == 401
        off = await client.post("/api/auth/2fa/disable", json={"password": PASSWORD, "code": recovery[2]},
                                headers=session)
        assert off.status_code == 204
        plain = await login(client, "secure_sam")
        assert "access_token" in plain


async def test_totp_secret_is_encrypted_at_rest(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Crypto_Cat")
        tokens = await login(client, "crypto_cat")
        enrol = (await client.post("/api/auth/2fa/enroll", headers=bearer(tokens["access_token"]))).json()
    from server.db.queries import users

    row = await users.by_username(auth_server.resources.db, "crypto_cat")
    assert row["totp_secret"] and enrol["secret"] not in row["totp_secret"]


async def test_mfa_step_is_rate_limited(auth_server: AppServer) -> None:
    async with auth_server.client() as client:
        await register(client, "Brute_Bob")
        headers = bearer((await login(client, "brute_bob"))["access_token"])
        secret = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()["secret"]
        await client.post("/api/auth/2fa/confirm", json={"code": totp_code(secret, -1)}, headers=headers)
        ticket = (await login(client, "brute_bob"))["mfa_ticket"]
        statuses = []
        for guess in range(7):
            response = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket,
                                                                      "code": f"{guess:06d}"})
            statuses.append(response.status_code)
        good = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket,
                                                              "code": totp_code(secret, 0)})
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]
    assert good.status_code == 429
