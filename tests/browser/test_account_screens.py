"""The account screens in the browser: sign up, turn on 2FA in settings (authenticator secret,
recovery codes), sign out, then sign in through the 2FA step; push settings reflect the server."""

from __future__ import annotations

from typing import Any

import pyotp

from server.auth.mailed_tokens import MailedTokens
from server.db.queries import users
from tests.browser.conftest import PHONE, new_page, screenshot, sign_in_with_form
from tests.support.accounts import PASSWORD
from tests.support.appserver import AppServer


async def test_sign_up_enable_2fa_and_sign_in_with_it(browser: Any, web: AppServer) -> None:
    page = await new_page(browser, web.base_url, viewport=PHONE)
    await page.goto("/signup")
    await page.get_by_label("Username").fill("steve")
    await page.get_by_label("Email").fill("steve@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url("**/community")  # a member's home: what is new in the community
    await page.get_by_role("heading", name="Community", level=1).wait_for()
    await page.locator('#nav a[data-nav="rooms"]').click()
    await page.get_by_role("link", name="# general").wait_for()

    # The address stays pending until its mailed link is opened: the PWA says so, in both places.
    await page.get_by_text("We sent a mail to steve@example.com").wait_for()
    await page.get_by_role("link", name="Settings").click()
    await page.get_by_text("Signed in as steve (steve@example.com)").wait_for()
    await page.get_by_text("Email not confirmed yet").wait_for()
    await page.get_by_role("button", name="Send the link again").click()
    await page.get_by_text("a new link is on its way").wait_for()
    steve = await users.by_username(web.resources.db, "steve")
    token = await MailedTokens(web.resources.db).issue(steve["id"], "verify", 3600)  # the mailed link
    await page.goto(f"/verify-email?token={token}")
    await page.get_by_text("Your email address is verified.").wait_for()
    await page.goto("/settings")
    await page.get_by_text("Signed in as steve (steve@example.com)").wait_for()
    assert await page.get_by_text("Email not confirmed yet").count() == 0
    await page.get_by_text("Off for this device.").wait_for()  # push: the server has VAPID keys
    await page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = await page.locator("form code").inner_text()
    await page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Turn on", exact=True).click()
    await page.get_by_text("Two-factor authentication is on.").wait_for()
    codes = await page.locator(".codes code").all_inner_texts()
    assert len(codes) == 10
    await screenshot(page, "settings-2fa-phone")

    await page.get_by_role("button", name="Sign out", exact=True).click()
    await page.wait_for_url("**/signin")
    await sign_in_with_form(page, "steve@example.com")
    await page.get_by_role("heading", name="Two-factor authentication").wait_for()
    await page.get_by_label("Code").fill(codes[0])  # a recovery code: the TOTP step was just used
    await page.get_by_role("button", name="Verify").click()
    await page.wait_for_url("**/community")
    await page.locator('#conn[data-state="connected"]').wait_for()
    assert page.errors == []
