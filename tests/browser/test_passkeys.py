"""Passkeys end to end in Chromium with a CDP virtual authenticator (ctap2, internal, resident keys,
user verification): add, rename and remove one in settings at 360 px, sign in with it alone, use it
on the 2FA step; then the refusals a member can meet — an assertion made on another origin (a
phishing page relaying our challenge) and a cloned authenticator whose counter went backwards.

WebAuthn refuses IP addresses as RP IDs, so the server's public address here is
http://localhost:<port> (a secure context, like 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa

from server.db.tables import audit_log
from tests.browser.conftest import new_page, problems, screenshot, sign_in_with_form, web_settings
from tests.conftest import fresh_sqlite_url
from tests.support.accounts import register
from tests.support.appserver import AppServer
from tests.support.services import free_port

NARROW = {"width": 360, "height": 780}
PASSKEY_SIGN_IN = "/api/auth/login/passkey"


@pytest.fixture
async def site(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[AppServer]:
    port = free_port()
    settings = web_settings(fresh_sqlite_url(sqlite_template, tmp_path), PUBLIC_URL=f"http://localhost:{port}")
    async with AppServer(settings, port=port) as server:
        yield server


def base(server: AppServer) -> str:
    return f"http://localhost:{server.port}"


async def virtual_authenticator(page: Any) -> tuple[Any, str]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable", {"enableUI": False})
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp, added["authenticatorId"]


async def no_horizontal_overflow(page: Any) -> None:
    widths = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"horizontal overflow at {widths[1]} px: content is {widths[0]} px wide"


def refusals_only(page: Any, expected: int) -> None:
    """Nothing went wrong in the page but the `expected` deliberate 401s of the passkey sign-in."""
    found = problems(page)
    refused = [s for s in found["status"] if s.startswith("401 POST") and s.endswith(PASSKEY_SIGN_IN)]
    assert len(refused) == expected, found
    assert len([c for c in found["console"] if "status of 401" in c]) == expected, found
    found["status"] = [s for s in found["status"] if s not in refused]
    found["console"] = [c for c in found["console"] if "status of 401" not in c]
    assert not any(found.values()), found


async def open_settings(page: Any) -> None:
    """Through the app's own link once it runs (a full navigation would abort the page's fetches)."""
    if page.url.startswith("http"):
        await page.get_by_role("link", name="Settings").click()
    else:
        await page.goto("/settings")
    await page.locator('ul[aria-label="Sessions"] li[data-current]').wait_for()  # settings fully loaded


async def add_passkey_in_settings(page: Any, name: str) -> None:
    await open_settings(page)
    await page.get_by_role("heading", name="Passkeys").wait_for()
    await page.get_by_label("Name for the new passkey").fill(name)
    await page.get_by_role("button", name="Add a passkey").click()
    await page.locator("li.passkey", has_text=name).wait_for()


async def sign_out(page: Any) -> None:
    await open_settings(page)
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await page.wait_for_url("**/signin")


async def test_add_rename_sign_in_second_factor_and_remove(browser: Any, site: AppServer) -> None:
    async with site.client() as client:
        await register(client, "pia")
    page = await new_page(browser, base(site), viewport=NARROW, username="pia")
    cdp, authenticator = await virtual_authenticator(page)

    await add_passkey_in_settings(page, "Test phone")
    row = page.locator("li.passkey", has_text="Test phone")
    await row.get_by_text("never used").wait_for()
    await no_horizontal_overflow(page)
    await row.get_by_role("button", name="Rename Test phone").click()
    await page.get_by_label("Passkey name").fill("Work phone")
    await page.get_by_role("button", name="Save").click()
    await page.locator("li.passkey", has_text="Work phone").wait_for()
    await no_horizontal_overflow(page)
    await screenshot(page, "settings-passkeys-360")
    stored = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))["credentials"]
    assert len(stored) == 1 and stored[0]["isResidentCredential"] and stored[0]["rpId"] == "localhost"

    # A passkey alone: no username typed.
    await sign_out(page)
    await no_horizontal_overflow(page)
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.wait_for_url("**/community")
    await open_settings(page)
    await page.locator("li.passkey", has_text="Work phone").get_by_text("last used just now").wait_for()

    # With 2FA on, the passkey replaces the code on the second step.
    enrol = await page.context.request.post("/api/auth/2fa/enroll", headers=await csrf(page))
    secret = (await enrol.json())["secret"]
    confirmed = await page.context.request.post("/api/auth/2fa/confirm", headers=await csrf(page),
                                                data={"code": pyotp.TOTP(secret).now()})
    assert confirmed.ok, await confirmed.text()
    await sign_out(page)
    await sign_in_with_form(page, "pia")
    await page.get_by_role("heading", name="Two-factor authentication").wait_for()
    await no_horizontal_overflow(page)
    await page.get_by_role("button", name="Use a passkey instead").click()
    await page.wait_for_url("**/community")

    await open_settings(page)
    await page.get_by_role("button", name="Remove Work phone").click()
    await page.get_by_text("No passkeys yet.").wait_for()
    assert await page.locator("li.passkey").count() == 0
    refusals_only(page, 0)


async def csrf(page: Any) -> dict[str, str]:
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    return {"x-csrf-token": cookies["vonix_csrf"]}


async def test_wrong_origin_and_cloned_counter_are_refused(browser: Any, site: AppServer) -> None:
    async with site.client() as client:
        await register(client, "quin")
    page = await new_page(browser, base(site), viewport=NARROW, username="quin")
    cdp, authenticator = await virtual_authenticator(page)
    await add_passkey_in_settings(page, "Laptop")
    await sign_out(page)
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.wait_for_url("**/community")
    await sign_out(page)
    [credential] = (await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator}))["credentials"]
    assert credential["signCount"] >= 2

    # A look-alike site on another origin relays every request to ours, challenge included. The
    # member's passkey (the same key, copied into this tab's authenticator) signs for the RP ID
    # (localhost), but the browser writes the page's real origin, which the server refuses.
    mirror_origin = f"http://localhost:{free_port()}"
    mirror = await new_page(browser, mirror_origin, viewport=NARROW, service_workers="block")
    mirror_cdp, mirror_authenticator = await virtual_authenticator(mirror)
    await mirror_cdp.send("WebAuthn.addCredential", {"authenticatorId": mirror_authenticator,
                                                     "credential": credential})

    async def relay(route: Any) -> None:
        upstream = await route.fetch(url=route.request.url.replace(mirror_origin, base(site), 1))
        await route.fulfill(response=upstream)

    await mirror.context.route(f"{mirror_origin}/**", relay)
    await mirror.goto("/signin")
    await mirror.get_by_role("button", name="Sign in with a passkey").click()
    await mirror.get_by_role("alert").filter(has_text=f"made on {mirror_origin}, not on this site").wait_for()
    assert mirror.url == f"{mirror_origin}/signin"
    refusals_only(mirror, 1)

    # A clone: the same key with an older signature counter than the server has seen.
    await cdp.send("WebAuthn.removeCredential", {"authenticatorId": authenticator,
                                                 "credentialId": credential["credentialId"]})
    await cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator,
                                              "credential": {**credential, "signCount": 0}})
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.get_by_role("alert").filter(has_text="counter went backwards").wait_for()
    assert page.url.endswith("/signin")
    await no_horizontal_overflow(page)
    await screenshot(page, "signin-passkey-cloned-360")
    refusals_only(page, 1)
    cloned = await site.resources.db.fetch_all("t.audit", sa.select(audit_log).where(
        audit_log.c.action == "passkey.cloned"))
    assert len(cloned) == 1 and cloned[0]["data"]["presented_count"] == 1
    # The genuine authenticator, still ahead of the server, keeps working.
    await cdp.send("WebAuthn.removeCredential", {"authenticatorId": authenticator,
                                                 "credentialId": credential["credentialId"]})
    await cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator,
                                              "credential": {**credential, "signCount": credential["signCount"] + 5}})
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await page.wait_for_url("**/community")
    refusals_only(page, 1)
