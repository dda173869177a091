"""The web console end to end: a real Chromium signs in, turns on two-factor sign-in, makes
and revokes app passwords, registers and uses a passkey, while real SMTP clients (smtplib
over STARTTLS) see the effect on the same running server."""

from __future__ import annotations

import smtplib
import time
from typing import Any

import pyotp
import pytest

from tests.smtp.server_harness import PASSWORD
from tests.web.conftest import AXE, Console, check_axe, shoot



def smtp_client(console: Console) -> smtplib.SMTP:
    server = console.server
    client = smtplib.SMTP("127.0.0.1", server.submission_port, local_hostname="client.test", timeout=10)
    client.starttls(context=server.client_context())
    return client


def account(console: Console, login: str) -> str:
    console.server.credentials.create_account(login, password=PASSWORD)
    return login


def sign_in(page: Any, console: Console, login: str, password: str = PASSWORD) -> None:
    page.goto(f"{console.base}/signin")
    page.fill("#login", login)
    page.fill("#password", password)
    page.click("button[type=submit]:has-text('Sign in')")


def sign_out(page: Any) -> None:
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/signin?done=signed-out")


def enrol_totp(page: Any, console: Console) -> tuple[pyotp.TOTP, list[str]]:
    page.goto(f"{console.base}/two-factor")
    page.click("button:has-text('Set up an authenticator app')")
    assert page.locator(".qr svg").count() == 1
    totp = pyotp.TOTP(page.locator("code.key").inner_text().strip())
    page.fill("#code", "000000" if totp.now() != "000000" else "111111")
    page.click("button:has-text('Turn on')")
    assert page.locator(".error").is_visible()  # a wrong code does not turn it on
    assert "Two-factor sign-in is off" in page.locator("main").inner_text()
    page.click("button:has-text('Set up an authenticator app')")
    totp = pyotp.TOTP(page.locator("code.key").inner_text().strip())
    page.fill("#code", totp.now())
    page.click("button:has-text('Turn on')")
    codes = [c.strip() for c in page.locator(".recovery-codes code").all_inner_texts()]
    assert len(codes) == 10
    return totp, codes


def test_totp_app_passwords_and_smtp(console: Console, browser: Any) -> None:
    login = account(console, "owner1@example.com")
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, console, login)
    page.wait_for_url("**/apps")
    assert page.locator("h1").inner_text() == "Apps and devices"

    # the session cookie and the headers every page carries
    cookie = next(c for c in context.cookies() if c["name"] == "sg_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # http on loopback
    response = page.goto(f"{console.base}/apps")
    headers = response.headers
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"

    # a form without its CSRF token is refused, with the session cookie sent
    refused = page.request.post(f"{console.base}/apps", form={"name": "no-token"})
    assert refused.status == 403
    refused = page.request.post(f"{console.base}/apps", form={"name": "bad-token", "csrf": "0" * 64})
    assert refused.status == 403
    assert "no-token" not in page.goto(f"{console.base}/apps").text()

    totp, codes = enrol_totp(page, console)

    # with a second factor, the main password no longer works for SMTP: 534 naming the page
    with smtp_client(console) as client, pytest.raises(smtplib.SMTPAuthenticationError) as err:
        client.login(login, PASSWORD)
    assert err.value.smtp_code == 534
    assert err.value.smtp_error.startswith(b"5.7.9 Application-specific password required; make one at http://")
    assert err.value.smtp_error.endswith(b"/apps")

    # sign in again: the password, then a code; a wrong one is refused
    sign_out(page)
    sign_in(page, console, login)
    page.wait_for_url("**/signin/second-factor")
    page.fill("#code", "000000" if totp.now() != "000000" else "111111")
    page.click("button:has-text('Continue')")
    assert page.locator(".error").inner_text() == "that code is not right"
    page.fill("#code", totp.at(time.time() + 30))  # the next step: the enrolment used this one
    page.click("button:has-text('Continue')")
    page.wait_for_url("**/apps")

    # an app password made in the page sends mail; its use shows with its source
    page.fill("#name", "Laptop")
    page.select_option("#client", "thunderbird")
    page.click("button:has-text('Create app password')")
    secret = page.input_value("#secret")
    assert secret.startswith("sgp_")
    assert "Connection security: STARTTLS" in page.content()
    with smtp_client(console) as client:
        client.login(login, secret)
        client.sendmail(login, ["bob@example.org"], f"From: {login}\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nhi\r\n")
    page.goto(f"{console.base}/apps")
    row = page.locator("tr", has_text="Laptop")
    assert "from 127.0.0.1" in row.locator(".last-used").inner_text()
    assert row.locator("td").nth(3).inner_text() == "1"
    assert secret not in page.content()  # shown once, never again

    # revoked in the page, refused over SMTP at once
    row.locator("button:has-text('Revoke')").click()
    page.wait_for_url("**/apps?done=revoked")
    assert page.locator("tr", has_text="Laptop").locator(".state").inner_text() == "revoked"
    with smtp_client(console) as client, pytest.raises(smtplib.SMTPAuthenticationError) as err:
        client.login(login, secret)
    assert err.value.smtp_code == 535

    # sign-in activity lists the web sign-ins and the SMTP logins, with source and outcome
    page.goto(f"{console.base}/activity")
    text = page.locator("table").inner_text()
    assert "this console" in text and "mail (SMTP)" in text and "wrong-second-factor" in text and "127.0.0.1" in text

    # a recovery code works once
    for attempt in range(2):
        sign_out(page)
        sign_in(page, console, login)
        page.wait_for_url("**/signin/second-factor")
        page.fill("#recovery", codes[0])
        page.click("button:has-text('Use recovery code')")
        if attempt == 0:
            page.wait_for_url("**/apps")
        else:
            assert page.locator(".error").inner_text() == "that code is not right"
    context.close()


def test_passkey_registered_and_used(console: Console, browser: Any) -> None:
    login = account(console, "owner2@example.com")
    context = browser.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    sign_in(page, console, login)
    page.wait_for_url("**/apps")
    page.goto(f"{console.base}/two-factor")
    page.fill("#key-name", "Test key")
    page.click("#add-key")
    page.wait_for_selector("#key-codes:not([hidden])")
    assert page.locator("#key-codes li").count() == 10
    assert "Test key is on" in page.locator("#key-status").inner_text()
    page.reload()
    assert "Test key" in page.locator(".factors").inner_text()

    sign_out(page)
    sign_in(page, console, login)
    page.wait_for_url("**/signin/second-factor")
    page.click("#use-key")
    page.wait_for_url("**/apps")
    context.close()


PAGES = ["/apps", "/activity", "/alerts", "/password", "/two-factor"]


def test_every_page_is_accessible_and_fits_a_phone(console: Console, browser: Any) -> None:
    """axe-core finds nothing serious or critical on any page; screenshots at 390 px and desktop."""
    assert AXE.exists(), f"{AXE} is missing: run scripts/install-test-clients.sh"
    login = account(console, "owner3@example.com")
    # axe is injected as a script of the test's: this context alone lets it past the CSP
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()

    page.goto(f"{console.base}/signin")
    check_axe(page, "signin")
    shoot(page, "signin")
    sign_in(page, console, login)
    page.wait_for_url("**/apps")
    page.fill("#name", "Phone")
    page.select_option("#client", "apple")
    page.click("button:has-text('Create app password')")
    check_axe(page, "secret")
    shoot(page, "app-password-created")
    for path in PAGES:
        page.goto(f"{console.base}{path}")
        check_axe(page, path)
        if path not in ("/alerts", "/password"):
            shoot(page, path.strip("/"))

    # the password page's live strength feedback: the server's policy speaks as one types
    page.goto(f"{console.base}/password")
    page.fill("#new", "password1")
    page.wait_for_selector("#strength-reasons[data-ok=no]")
    assert "most common passwords" in page.locator("#strength-reasons").inner_text()
    shoot(page, "password")
    page.fill("#new", "quartz-tulip-anvil-orbit-73")
    page.wait_for_selector("#strength-reasons[data-ok=yes]")
    assert page.locator("#strength-meter").get_attribute("value") in ("3", "4")
    check_axe(page, "password with feedback")
    page.goto(f"{console.base}/two-factor")
    page.click("button:has-text('Set up an authenticator app')")
    check_axe(page, "totp")
    shoot(page, "totp-setup")
    totp = pyotp.TOTP(page.locator("code.key").inner_text().strip())
    page.fill("#code", totp.now())
    page.click("button:has-text('Turn on')")
    check_axe(page, "recovery codes")
    sign_out(page)
    sign_in(page, console, login)
    page.wait_for_url("**/signin/second-factor")
    check_axe(page, "second factor")
    shoot(page, "second-factor")
    context.close()
