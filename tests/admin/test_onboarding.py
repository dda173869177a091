"""Onboarding end to end: `account add --invite`, the link's page, SMTP with the password set there; offboarding."""

from __future__ import annotations

import plistlib
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from smtpgate.ops import Operations
from tests.admin.conftest import Api, start_api
from tests.cli.conftest import Cli

PASSWORD = "velvet-harbor-pencil-43"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server, api = start_api(tmp_path_factory.mktemp("onboarding") / "data",
                            extra_config='[autoconfig]\nincoming = "imap:imap.example.com:993:SSL"\n')
    yield api
    server.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def smtp_login(api: Api, login: str, secret: str) -> int:
    server = api.server
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=20) as client:
        client.starttls(context=server.client_context())
        try:
            return client.login(login, secret)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def test_an_invited_owner_sets_the_password_through_the_link_once(api: Api) -> None:
    cli = Cli(api.server.config_path)
    created = cli.ok("account", "add", "grace@example.com", "--invite", "--expires", "2d", "--json").json()
    url = created["invite"]["url"]
    assert created["has_password"] is False and created["invite"]["state"] == "pending"
    assert url.startswith(api.base + "/invite/sgi_")
    browser = httpx.Client(timeout=10)
    page = browser.get(url)
    assert page.status_code == 200 and "grace@example.com" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert (page.headers["referrer-policy"], page.headers["x-frame-options"], page.headers["cache-control"]) == (
        "no-referrer", "DENY", "no-store")
    csrf = csrf_of(page.text)
    assert browser.post(url, data={"password": PASSWORD, "confirm": PASSWORD}).status_code == 403  # no CSRF token
    differ = browser.post(url, data={"csrf": csrf, "password": PASSWORD, "confirm": PASSWORD + "x"})
    assert differ.status_code == 400 and "not the same" in differ.text
    weak = browser.post(url, data={"csrf": csrf, "password": "password1", "confirm": "password1"})
    assert weak.status_code == 400 and 'role="alert"' in weak.text
    assert smtp_login(api, "grace@example.com", PASSWORD) == 535
    done = browser.post(url, data={"csrf": csrf, "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/apps?done=welcome"
    assert "sg_session" in browser.cookies   # signed in: the next page is Apps and devices
    assert "Your password is set" in browser.get(api.base + "/apps?done=welcome").text
    assert smtp_login(api, "grace@example.com", PASSWORD) == 235
    again = browser.post(url, data={"csrf": csrf, "password": "velvet-harbor-pencil-44", "confirm": "velvet-harbor-pencil-44"})
    assert again.status_code == 410 and "used already" in again.text
    assert smtp_login(api, "grace@example.com", PASSWORD) == 235
    trail = Operations(api.server.runtime).journal.query(action="invite.accept")
    assert [e.outcome for e in trail][:2] == ["ok", "weak-password"] and trail[0].face == "web"
    assert created["invite"]["url"].rpartition("/")[2] not in api.server.log()


def test_an_unknown_link_is_refused_and_counted(api: Api) -> None:
    page = httpx.get(api.base + "/invite/sgi_" + "a" * 39, timeout=10)
    assert page.status_code == 404 and "cannot be used" in page.text


def test_the_api_invites_with_a_role_and_offboarding_ends_everything(api: Api) -> None:
    admin, viewer, operator = api.client("admin"), api.client("viewer"), api.client("operator")
    body = {"login": "hopper@example.com", "invite": True, "role": "operator", "require_second_factor": True}
    assert viewer.post("/api/v1/accounts", json=body).status_code == 403
    created = admin.post("/api/v1/accounts", json=body)
    assert created.status_code == 201, created.text
    data = created.json()
    assert (data["role"], data["require_second_factor"], data["invite"]["require_second_factor"]) == ("operator", True, True)
    assert admin.post("/api/v1/accounts", json={**body, "login": "x@example.com", "password": PASSWORD}).status_code == 422
    first_url = data["invite"]["url"]
    renewed = admin.post("/api/v1/accounts/hopper@example.com/invite", json={"expires": "1d"})
    assert renewed.status_code == 201 and renewed.json()["url"] != first_url
    assert httpx.get(first_url, timeout=10).status_code == 410     # the older link ended
    url = renewed.json()["url"]
    browser = httpx.Client(timeout=10)
    page = browser.get(url)
    assert page.status_code == 200 and "second factor" in page.text
    done = browser.post(url, data={"csrf": csrf_of(page.text), "password": PASSWORD, "confirm": PASSWORD})
    assert done.status_code == 303 and done.headers["location"] == "/two-factor?done=welcome-2fa"
    assert browser.get(api.base + "/apps").headers["location"] == "/two-factor?done=welcome-2fa"  # before anything else
    page = browser.get(api.base + "/two-factor")
    assert page.status_code == 200 and "Two-factor" in page.text
    refused = browser.post(api.base + "/apps", data={"csrf": csrf_of(page.text), "name": "too-early"})
    assert refused.status_code == 403 and "second factor first" in refused.text
    app = admin.post("/api/v1/accounts/hopper@example.com/app-passwords", json={"name": "laptop"}).json()["secret"]
    assert smtp_login(api, "hopper@example.com", app) == 235
    assert admin.patch("/api/v1/accounts/hopper@example.com", json={"role": "viewer"}).json()["role"] == "viewer"
    assert viewer.patch("/api/v1/accounts/hopper@example.com", json={"enabled": False}).status_code == 403
    later = admin.post("/api/v1/accounts/hopper@example.com/invite").json()["url"]
    assert operator.patch("/api/v1/accounts/hopper@example.com", json={"enabled": False}).json()["enabled"] is False
    for secret in (PASSWORD, app):
        assert smtp_login(api, "hopper@example.com", secret) == 535
    signed_out = browser.get(api.base + "/two-factor")   # the web session of the invitation ended too
    assert signed_out.status_code == 303 and signed_out.headers["location"].startswith("/signin")
    assert httpx.get(later, timeout=10).status_code == 410
    assert admin.post("/api/v1/accounts/hopper@example.com/invite").json()["code"] == "account-disabled"


def test_cli_sets_the_console_role_invites_again_and_writes_apple_profiles(api: Api, tmp_path: Path) -> None:
    cli = Cli(api.server.config_path)
    shown = cli.ok("account", "add", "lin@example.com", "--no-password", "--role", "admin", "--require-2fa", "--json").json()
    assert (shown["role"], shown["require_second_factor"]) == ("admin", True)
    refused = cli("account", "set", "lin@example.com", "--role", "root")
    assert refused.code == 2 and "--role" in refused.stderr
    shown = cli.ok("account", "set", "lin@example.com", "--role", "none", "--no-require-2fa", "--json").json()
    assert (shown["role"], shown["require_second_factor"]) == (None, False)
    invited = cli.ok("account", "invite", "lin@example.com", "--expires", "1h")
    assert "/invite/sgi_" in invited.stdout and "works once" in invited.stdout
    profile = tmp_path / "phone.mobileconfig"
    created = cli.ok("app-password", "create", "lin@example.com", "--name", "phone", "--apple-profile", str(profile),
                     "--with-secret", "--json").json()
    mail = plistlib.loads(profile.read_bytes())["PayloadContent"][0]
    assert mail["OutgoingPassword"] == created["secret"] and profile.stat().st_mode & 0o777 == 0o600
    again = cli.ok("creds", "apple-profile", created["id"])
    assert created["secret"] not in again.stdout and "com.apple.mail.managed" in again.stdout
