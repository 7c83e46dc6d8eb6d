"""Passkeys over the API with a software authenticator (tests/support/authenticator.py: a real P-256
key signing real authenticatorData and clientDataJSON), on both backends: register several, list,
rename, remove; sign in with a passkey alone; a passkey as the second factor; and the refusals —
wrong origin, wrong RP ID, a replayed or foreign challenge, a cloned authenticator's counter,
changed backup eligibility, missing user verification, lockout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.db.tables import audit_log
from server.db.tables_passkeys import passkeys, webauthn_challenges
from server.db.types import utcnow
from tests.conftest import make_settings
from tests.support.accounts import bearer, login, register, totp_code
from tests.support.appserver import AppServer
from tests.support.authenticator import SoftAuthenticator, b64url
from tests.support.contract import assert_conforms

RP_ID = "vonix.test"
ORIGIN = "https://vonix.test"
PASSKEY_SETTINGS = {"WEBAUTHN_RP_ID": RP_ID, "WEBAUTHN_ORIGINS": ORIGIN, "RATE_LIMIT_AUTH": "1000/60"}


@pytest.fixture
async def server(backend: dict[str, Any]) -> AsyncIterator[AppServer]:
    async with AppServer(make_settings(**PASSKEY_SETTINGS, **backend)) as app:
        yield app


async def member(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    await register(client, name)
    return bearer((await login(client, name.lower()))["access_token"])


async def add_passkey(client: httpx.AsyncClient, headers: dict[str, str], device: SoftAuthenticator,
                      name: str | None = None, **create: Any) -> httpx.Response:
    options = (await client.post("/api/auth/passkeys/register/options", headers=headers)).json()
    body: dict[str, Any] = {"challenge_id": options["challenge_id"],
                            "credential": device.create(options["publicKey"], **create)}
    if name is not None:
        body["name"] = name
    return await client.post("/api/auth/passkeys/register", json=body, headers=headers)


async def passkey_login(client: httpx.AsyncClient, device: SoftAuthenticator, **get: Any) -> httpx.Response:
    options = (await client.post("/api/auth/login/passkey/options")).json()
    return await client.post("/api/auth/login/passkey", json={
        "challenge_id": options["challenge_id"], "credential": device.get(options["publicKey"], **get)})


def code_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def audit_actions(server: AppServer, action: str) -> list[Any]:
    return await server.resources.db.fetch_all("t.audit", sa.select(audit_log).where(audit_log.c.action == action))


async def test_register_list_rename_remove(server: AppServer) -> None:
    phone, laptop = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN, backup_eligible=False)
    async with server.client() as client:
        headers = await member(client, "Key_Kim")
        first = await add_passkey(client, headers, phone, "Phone")
        assert first.status_code == 201, first.text
        assert first.json()["passkey"]["name"] == "Phone"
        assert first.json()["passkey"]["backup_eligible"] is True
        await assert_conforms(client, first, "POST", "/api/auth/passkeys/register")

        ceremony = await client.post("/api/auth/passkeys/register/options", headers=headers)
        options = (await assert_conforms(client, ceremony, "POST", "/api/auth/passkeys/register/options"))["publicKey"]
        assert options["rp"] == {"id": RP_ID, "name": "Vonix"}
        assert options["authenticatorSelection"]["residentKey"] == "required"
        # The registered passkey is excluded: the same authenticator is not registered twice.
        assert [c["id"] for c in options["excludeCredentials"]] == [b64url(phone.credentials[0].credential_id)]
        second = await add_passkey(client, headers, laptop)  # no name: named after the device
        assert second.status_code == 201 and second.json()["passkey"]["name"].startswith("Passkey on ")
        assert second.json()["passkey"]["backup_eligible"] is False

        listing = await client.get("/api/auth/passkeys", headers=headers)
        listed = (await assert_conforms(client, listing, "GET", "/api/auth/passkeys"))["passkeys"]
        assert [p["name"] for p in listed] == ["Phone", second.json()["passkey"]["name"]]
        assert all(p["last_used_at"] is None for p in listed)
        assert listed[0]["transports"] == ["internal"] and "public_key" not in listed[0]

        pid = listed[0]["id"]
        renamed = await client.patch(f"/api/auth/passkeys/{pid}", json={"name": "  Work   phone "}, headers=headers)
        assert renamed.status_code == 200 and renamed.json()["passkey"]["name"] == "Work phone"
        await assert_conforms(client, renamed, "PATCH", "/api/auth/passkeys/{passkey_id}")
        blank = await client.patch(f"/api/auth/passkeys/{pid}", json={"name": "   "}, headers=headers)
        assert blank.status_code == 422 and code_of(blank) == "validation_failed"

        # Another member can neither rename nor remove it.
        other = await member(client, "Other_Olga")
        assert code_of(await client.delete(f"/api/auth/passkeys/{pid}", headers=other)) == "passkey_not_found"
        assert code_of(await client.patch(f"/api/auth/passkeys/{pid}", json={"name": "x"},
                                          headers=other)) == "passkey_not_found"
        assert (await client.get("/api/auth/passkeys", headers=other)).json() == {"passkeys": []}

        assert (await passkey_login(client, phone)).status_code == 200
        removed = await client.delete(f"/api/auth/passkeys/{pid}", headers=headers)
        assert removed.status_code == 204
        assert [p["name"] for p in (await client.get("/api/auth/passkeys", headers=headers)).json()["passkeys"]] \
            == [second.json()["passkey"]["name"]]
        gone = await passkey_login(client, phone)  # a removed passkey no longer signs in
        assert gone.status_code == 401 and code_of(gone) == "passkey_unknown"
        assert (await client.get("/api/auth/passkeys")).status_code == 401  # signed out: nothing
    assert len(await audit_actions(server, "passkey.added")) == 2
    assert len(await audit_actions(server, "passkey.removed")) == 1


async def test_malformed_bodies_are_coded(server: AppServer) -> None:
    device = SoftAuthenticator(ORIGIN)
    async with server.client() as client:
        headers = await member(client, "Shape_Sid")
        options = (await client.post("/api/auth/passkeys/register/options", headers=headers)).json()
        credential = device.create(options["publicKey"])
        credential["response"]["attestationObject"] = "not base64url!"
        bad = await client.post("/api/auth/passkeys/register", headers=headers,
                                json={"challenge_id": options["challenge_id"], "credential": credential})
        assert bad.status_code == 422 and code_of(bad) == "validation_failed"
        fields = {d["field"] for d in bad.json()["error"]["details"]}
        assert "credential.response.attestationObject" in fields
        junk = await client.post("/api/auth/login/passkey", json={"challenge_id": "0" * 32, "credential": {}})
        assert junk.status_code == 422
        garbage = device.create(options["publicKey"])
        garbage["response"]["attestationObject"] = "AAAA"
        refused = await client.post("/api/auth/passkeys/register", headers=headers,
                                    json={"challenge_id": options["challenge_id"], "credential": garbage})
        assert refused.status_code == 400 and code_of(refused) == "passkey_invalid"


async def test_sign_in_with_a_passkey_alone(server: AppServer) -> None:
    device = SoftAuthenticator(ORIGIN)
    async with server.client() as client:
        headers = await member(client, "Alone_Ann")
        assert (await add_passkey(client, headers, device, "Laptop")).status_code == 201

        ceremony = await client.post("/api/auth/login/passkey/options")
        options = await assert_conforms(client, ceremony, "POST", "/api/auth/login/passkey/options")
        assert options["publicKey"]["rpId"] == RP_ID
        assert options["publicKey"]["userVerification"] == "required"
        assert not options["publicKey"].get("allowCredentials")  # discoverable: no username first
        signed = await client.post("/api/auth/login/passkey", json={
            "challenge_id": options["challenge_id"], "credential": device.get(options["publicKey"]),
            "mode": "cookie"})
        assert signed.status_code == 200, signed.text
        assert signed.json()["user"]["username"] == "Alone_Ann" and "access_token" not in signed.json()
        assert "vonix_access" in signed.cookies or "vonix_session" in signed.cookies
        await assert_conforms(client, signed, "POST", "/api/auth/login/passkey")  # a cookie session
        token = await passkey_login(client, device)
        await assert_conforms(client, token, "POST", "/api/auth/login/passkey")  # a token session
        me = await client.get("/api/auth/me", headers=bearer(token.json()["access_token"]))
        assert me.json()["username"] == "Alone_Ann"
        sessions = (await client.get("/api/auth/sessions", headers=headers)).json()["sessions"]
        assert sum(1 for s in sessions if s["mfa"]) == 2  # UV passkey sessions count as MFA

        listed = (await client.get("/api/auth/passkeys", headers=headers)).json()["passkeys"]
        assert listed[0]["last_used_at"] is not None
        row = await server.resources.db.fetch_one("t.pk", sa.select(passkeys))
        assert row["sign_count"] == device.credentials[0].sign_count == 3

        device.user_verified = False  # presence only: not enough for a passkey alone
        no_uv = await passkey_login(client, device)
        assert no_uv.status_code == 401 and code_of(no_uv) == "passkey_user_verification_required"


async def test_passkey_as_the_second_factor(server: AppServer) -> None:
    device, stranger = SoftAuthenticator(ORIGIN, user_verified=False), SoftAuthenticator(ORIGIN)
    async with server.client() as client:
        headers = await member(client, "Two_Tom")
        secret = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()["secret"]
        assert (await client.post("/api/auth/2fa/confirm", json={"code": totp_code(secret, -1)},
                                  headers=headers)).status_code == 200
        assert (await add_passkey(client, headers, device, "Key")).status_code == 201
        other = await member(client, "Stranger_Sue")
        assert (await add_passkey(client, other, stranger)).status_code == 201

        ticket = (await login(client, "two_tom"))["mfa_ticket"]
        ceremony = await client.post("/api/auth/login/mfa/passkey/options", json={"mfa_ticket": ticket})
        options = await assert_conforms(client, ceremony, "POST", "/api/auth/login/mfa/passkey/options")
        allowed = options["publicKey"]["allowCredentials"]
        assert [c["id"] for c in allowed] == [b64url(device.credentials[0].credential_id)]

        # Another account's passkey does not pass this account's second step.
        foreign = await client.post("/api/auth/login/mfa/passkey", json={
            "mfa_ticket": ticket, "challenge_id": options["challenge_id"],
            "credential": stranger.get(options["publicKey"], credential=stranger.credentials[0])})
        assert foreign.status_code == 401 and code_of(foreign) == "passkey_unknown"

        # A challenge is bound to its ticket: another sign-in's ticket cannot use it.
        options = (await client.post("/api/auth/login/mfa/passkey/options", json={"mfa_ticket": ticket})).json()
        other_ticket = (await login(client, "two_tom"))["mfa_ticket"]
        crossed = await client.post("/api/auth/login/mfa/passkey", json={
            "mfa_ticket": other_ticket, "challenge_id": options["challenge_id"],
            "credential": device.get(options["publicKey"])})
        assert crossed.status_code == 400 and code_of(crossed) == "passkey_challenge_invalid"

        options = (await client.post("/api/auth/login/mfa/passkey/options", json={"mfa_ticket": ticket})).json()
        ok = await client.post("/api/auth/login/mfa/passkey", json={
            "mfa_ticket": ticket, "challenge_id": options["challenge_id"],
            "credential": device.get(options["publicKey"])})  # presence is enough after the password
        assert ok.status_code == 200, ok.text
        assert "access_token" in ok.json() and ok.json()["user"]["username"] == "Two_Tom"
        await assert_conforms(client, ok, "POST", "/api/auth/login/mfa/passkey")

        forged = await client.post("/api/auth/login/mfa/passkey/options", json={"mfa_ticket": ticket + "x"})
        assert forged.status_code == 401 and code_of(forged) == "invalid_mfa_ticket"
        # Without 2FA there is no second step to take.
        none = await client.post("/api/auth/login/mfa/passkey/options",
                                 json={"mfa_ticket": (await login(client, "stranger_sue"))["access_token"]})
        assert none.status_code == 401 and code_of(none) == "invalid_mfa_ticket"


async def test_second_factor_failures_share_the_totp_lockout(backend: dict[str, Any]) -> None:
    device = SoftAuthenticator(ORIGIN)
    settings = make_settings(**PASSKEY_SETTINGS, LOCKOUT_THRESHOLD=3, **backend)
    async with AppServer(settings) as app, app.client() as client:
        headers = await member(client, "Lock_Lee")
        secret = (await client.post("/api/auth/2fa/enroll", headers=headers)).json()["secret"]
        await client.post("/api/auth/2fa/confirm", json={"code": totp_code(secret, -1)}, headers=headers)
        assert (await add_passkey(client, headers, device)).status_code == 201
        ticket = (await login(client, "lock_lee"))["mfa_ticket"]
        for guess in range(3):
            wrong = await client.post("/api/auth/login/mfa", json={"mfa_ticket": ticket, "code": f"{guess:06d}"})
            assert wrong.status_code == 401
        options = (await client.post("/api/auth/login/mfa/passkey/options", json={"mfa_ticket": ticket})).json()
        locked = await client.post("/api/auth/login/mfa/passkey", json={
            "mfa_ticket": ticket, "challenge_id": options["challenge_id"],
            "credential": device.get(options["publicKey"])})
        assert locked.status_code == 429 and code_of(locked) == "account_locked"


async def test_wrong_origin_and_wrong_rp_id_are_refused(server: AppServer) -> None:
    device = SoftAuthenticator(ORIGIN)
    async with server.client() as client:
        headers = await member(client, "Phish_Pat")
        # Registration made on another origin, or scoped to another RP ID, is refused by name.
        wrong_origin = await add_passkey(client, headers, device, origin="https://vonix.test.evil.example")
        assert wrong_origin.status_code == 400 and code_of(wrong_origin) == "passkey_wrong_origin"
        wrong_rp = await add_passkey(client, headers, device, rp_id="evil.example")
        assert wrong_rp.status_code == 400 and code_of(wrong_rp) == "passkey_wrong_rp_id"
        device.credentials.clear()
        assert (await add_passkey(client, headers, device)).status_code == 201

        # A phishing page relays our challenge; the browser writes its own origin in clientDataJSON.
        relayed = await passkey_login(client, device, origin="https://vonix-login.example")
        assert relayed.status_code == 401 and code_of(relayed) == "passkey_wrong_origin"
        other_rp = await passkey_login(client, device, rp_id="evil.example")
        assert other_rp.status_code == 401 and code_of(other_rp) == "passkey_wrong_rp_id"
        assert (await passkey_login(client, device)).status_code == 200  # the real site still works
    assert len(await audit_actions(server, "passkey.added")) == 1


async def test_replayed_and_stale_challenges_are_refused(server: AppServer) -> None:
    device = SoftAuthenticator(ORIGIN)
    async with server.client() as client:
        headers = await member(client, "Replay_Rae")
        assert (await add_passkey(client, headers, device)).status_code == 201
        options = (await client.post("/api/auth/login/passkey/options")).json()
        body = {"challenge_id": options["challenge_id"], "credential": device.get(options["publicKey"])}
        assert (await client.post("/api/auth/login/passkey", json=body)).status_code == 200
        replay = await client.post("/api/auth/login/passkey", json=body)  # the same answer again
        assert replay.status_code == 400 and code_of(replay) == "passkey_challenge_invalid"

        # An old answer sent with a fresh challenge id: its signed challenge is not the new one.
        fresh = (await client.post("/api/auth/login/passkey/options")).json()
        swapped = await client.post("/api/auth/login/passkey", json={**body, "challenge_id": fresh["challenge_id"]})
        assert swapped.status_code == 400 and code_of(swapped) == "passkey_challenge_invalid"

        # An expired challenge is refused even unused.
        stale = (await client.post("/api/auth/login/passkey/options")).json()
        await server.resources.db.execute("t.expire", webauthn_challenges.update().where(
            webauthn_challenges.c.id == stale["challenge_id"]).values(expires_at=utcnow()))
        late = await client.post("/api/auth/login/passkey", json={
            "challenge_id": stale["challenge_id"], "credential": device.get(stale["publicKey"])})
        assert late.status_code == 400 and code_of(late) == "passkey_challenge_invalid"

        # A registration challenge belongs to the session that asked for it.
        reg = (await client.post("/api/auth/passkeys/register/options", headers=headers)).json()
        other_session = bearer((await login(client, "replay_rae"))["access_token"])
        stolen = await client.post("/api/auth/passkeys/register", headers=other_session, json={
            "challenge_id": reg["challenge_id"], "credential": SoftAuthenticator(ORIGIN).create(reg["publicKey"])})
        assert stolen.status_code == 400 and code_of(stolen) == "passkey_challenge_invalid"


async def test_cloned_authenticator_counter_is_refused(server: AppServer) -> None:
    device = SoftAuthenticator(ORIGIN)
    async with server.client() as client:
        headers = await member(client, "Clone_Cal")
        assert (await add_passkey(client, headers, device)).status_code == 201
        for _ in range(3):
            assert (await passkey_login(client, device)).status_code == 200
        credential = device.credentials[0]
        seen = credential.sign_count  # 4: registration and three sign-ins
        credential.sign_count = 1  # a copy of the key made earlier: its counter lags behind
        cloned = await passkey_login(client, device)  # signs with counter 2 < 4
        assert cloned.status_code == 401 and code_of(cloned) == "passkey_cloned"
        credential.sign_count = seen - 1  # an equal counter (4) is a regression too
        assert code_of(await passkey_login(client, device)) == "passkey_cloned"
        row = await server.resources.db.fetch_one("t.pk", sa.select(passkeys))
        assert row["sign_count"] == seen  # the refused answers did not move the stored counter
        credential.sign_count = seen + 10  # the genuine authenticator, still ahead, keeps working
        assert (await passkey_login(client, device)).status_code == 200
    events = await audit_actions(server, "passkey.cloned")
    assert len(events) == 2
    assert events[0]["data"]["stored_count"] == seen and events[0]["data"]["presented_count"] == 2


async def test_zero_counters_and_backup_flags(server: AppServer) -> None:
    synced = SoftAuthenticator(ORIGIN, counter_step=0, backup_eligible=True, backed_up=False)
    async with server.client() as client:
        headers = await member(client, "Sync_Sam")
        assert (await add_passkey(client, headers, synced)).status_code == 201
        # Synced passkeys often keep their counter at 0: both zero is not a clone signal.
        assert (await passkey_login(client, synced)).status_code == 200
        synced.backed_up = True  # backed up since: BS is stored
        assert (await passkey_login(client, synced)).status_code == 200
        listed = (await client.get("/api/auth/passkeys", headers=headers)).json()["passkeys"]
        assert listed[0]["backed_up"] is True
        synced.backup_eligible = synced.backed_up = False  # BE never changes for a credential
        changed = await passkey_login(client, synced)
        assert changed.status_code == 401 and code_of(changed) == "passkey_invalid"
    assert len(await audit_actions(server, "passkey.backup_eligibility_changed")) == 1


async def test_failed_passkey_sign_ins_lock_the_account(backend: dict[str, Any]) -> None:
    device = SoftAuthenticator(ORIGIN)
    settings = make_settings(**PASSKEY_SETTINGS, LOCKOUT_THRESHOLD=3, **backend)
    async with AppServer(settings) as app, app.client() as client:
        headers = await member(client, "Brute_Bea")
        assert (await add_passkey(client, headers, device)).status_code == 201
        for _ in range(3):  # answers from a phishing origin: signed by the right key, refused
            assert code_of(await passkey_login(client, device, origin="https://evil.example")) \
                == "passkey_wrong_origin"
        locked = await passkey_login(client, device)
        assert locked.status_code == 429 and code_of(locked) == "account_locked"
        assert locked.headers["Retry-After"]
        password = await client.post("/api/auth/login", json={"login": "brute_bea",
                                                              "password": "correct horse battery staple 42"})
        assert password.status_code == 429  # the same account lock as the password path


async def test_a_challenge_issued_by_one_replica_is_answered_at_another(scaled_backend: dict[str, Any]) -> None:
    device = SoftAuthenticator(ORIGIN)
    shared = {**PASSKEY_SETTINGS, **scaled_backend, "SECRET_KEY": "replicas-share-this-secret-" + "x" * 16}
    async with AppServer(make_settings(**shared)) as one, AppServer(make_settings(**shared)) as two:
        async with one.client() as a, two.client() as b:
            headers = await member(a, "Replica_Ray")
            options = (await a.post("/api/auth/passkeys/register/options", headers=headers)).json()
            done = await b.post("/api/auth/passkeys/register", headers=headers, json={
                "challenge_id": options["challenge_id"], "credential": device.create(options["publicKey"])})
            assert done.status_code == 201, done.text
            options = (await a.post("/api/auth/login/passkey/options")).json()
            body = {"challenge_id": options["challenge_id"], "credential": device.get(options["publicKey"])}
            assert (await b.post("/api/auth/login/passkey", json=body)).status_code == 200
            assert code_of(await a.post("/api/auth/login/passkey", json=body)) == "passkey_challenge_invalid"
