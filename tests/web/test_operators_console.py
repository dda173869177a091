"""The invitation and the operators' console in a real Chromium: an invited person reaches a working
app password and Thunderbird's autoconfig without typing a server setting; operators filter the
inventory and revoke; a viewer cannot; every page is clean for axe-core and fits a phone."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree as ET

import pyotp
import pytest

from smtpgate.ops import Actor, Operations
from tests.smtp.server_harness import PASSWORD, RunningServer, init_data_dir, wait_for_port
from tests.web.conftest import AXE, Console, check_axe, shoot

AUTOCONFIG = '\n[autoconfig]\nincoming = "imap:imap.example.com:993:SSL"\ndomains = ["example.com"]\n'
NEW_PASSWORD = "saffron-kettle-orbit-62"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    config = init_data_dir(tmp_path_factory.mktemp("operators") / "data")
    config.write_text(config.read_text() + AUTOCONFIG)
    server = RunningServer(config)
    server.start()
    port = int(server.config.admin.listen.rpartition(":")[2])
    wait_for_port(port, server.proc, server.log_path)  # type: ignore[arg-type]
    yield Console(server, f"http://localhost:{port}")
    server.close()


def ops(console: Console) -> Operations:
    return Operations(console.server.runtime)


def operator(console: Console, login: str, role: str) -> pyotp.TOTP:
    """An account with a console role and an authenticator app turned on."""
    credentials = console.server.credentials
    credentials.create_account(login, password=PASSWORD)
    credentials.set_account_policy(login, role=role, require_second_factor=True)
    enrolment = credentials.second_factors.totp_begin(login)
    totp = pyotp.TOTP(enrolment.secret)
    credentials.second_factors.totp_confirm(login, enrolment.factor_id, totp.now())
    return totp


def sign_in(page: Any, console: Console, login: str, totp: pyotp.TOTP) -> None:
    page.goto(f"{console.base}/signin")
    page.fill("#login", login)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]:has-text('Sign in')")
    page.wait_for_url("**/signin/second-factor")
    page.fill("#code", totp.at(time.time() + 30))   # the enrolment used the current code
    page.click("button:has-text('Continue')")
    page.wait_for_url("**/apps")


def test_from_an_invitation_to_a_working_app_password_found_by_autoconfig(console: Console, browser: Any) -> None:
    assert AXE.exists(), f"{AXE} is missing: run scripts/install-test-clients.sh"
    created = ops(console).accounts.create(Actor.local(), "newcomer@example.com", invite=True)
    assert created.invite is not None
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{console.base}/invite/{created.invite.secret}")
    assert "newcomer@example.com" in page.locator("main").inner_text()
    check_axe(page, "invite")
    shoot(page, "invite")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("button:has-text('Set my password')")
    page.wait_for_url("**/apps?done=welcome")
    assert "Your password is set" in page.locator(".notice").inner_text()
    page.fill("#name", "Laptop Thunderbird")
    page.select_option("#client", "thunderbird")
    page.click("button:has-text('Create app password')")
    secret = page.locator("#secret").input_value()
    assert secret.startswith("sgp_")

    # Thunderbird finds every setting from the address alone
    answer = page.request.get(f"{console.base}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=newcomer@example.com")
    assert answer.status == 200
    provider = ET.fromstring(answer.body()).find("emailProvider")
    assert provider is not None
    outgoing = provider.find("outgoingServer")
    assert outgoing is not None
    server = console.server
    host, port = outgoing.findtext("hostname"), int(outgoing.findtext("port") or 0)
    assert (host, port, outgoing.findtext("socketType")) == (server.config.hostname, server.submissions_port, "SSL")
    assert outgoing.findtext("username") == "%EMAILADDRESS%"
    with smtplib.SMTP_SSL("127.0.0.1", port, context=server.client_context(), timeout=10) as client:
        assert client.login("newcomer@example.com", secret)[0] == 235
    assert page.goto(f"{console.base}/invite/{created.invite.secret}").status == 410   # used once
    context.close()


def test_operators_filter_the_inventory_and_revoke_a_viewer_cannot(console: Console, browser: Any) -> None:
    creds = console.server.credentials
    creds.create_account("fleet@example.com")
    never = creds.create_app_password("fleet@example.com", "scanner-2F").credential
    soon = creds.create_app_password("fleet@example.com", "billing-app", expires_in=timedelta(days=3)).credential
    used = creds.create_app_password("fleet@example.com", "printer-1F")
    with smtplib.SMTP_SSL("127.0.0.1", console.server.submissions_port, context=console.server.client_context(),
                          timeout=10) as client:
        client.login("fleet@example.com", used.secret)
    creds.flush_usage()

    totp = operator(console, "ops@example.com", "operator")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, "ops@example.com", totp)
    for path, name in (("/console", "console-dashboard"), ("/console/accounts", "console-accounts"),
                       ("/console/credentials", "console-credentials"), ("/console/bans", "console-bans"),
                       ("/console/audit", "console-audit"), ("/console/alerts", "console-alerts"),
                       ("/console/queue", "console-queue")):
        assert page.goto(f"{console.base}{path}").status == 200, path
        check_axe(page, name)
        if name in ("console-dashboard", "console-credentials"):
            shoot(page, name)
    page.goto(f"{console.base}/console?window=hour")
    assert int(page.locator("#logins-ok").inner_text()) >= 1 and page.locator("svg.chart").count() == 4

    def shown(**query: str) -> set[str]:
        page.goto(f"{console.base}/console/credentials")
        for field, value in query.items():
            if field == "show":
                page.select_option("#show", value)
            else:
                page.fill(f"#{field}", value)
        page.click("button:has-text('Filter')")
        return set(page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.credential)"))

    fleet = {never.id, soon.id, used.credential.id}
    assert shown(account="fleet@example.com") == fleet
    assert shown(show="never-used", account="fleet@example.com") == {never.id, soon.id}
    assert shown(show="expiring") == {soon.id}
    assert shown(app="printer") == {used.credential.id}
    page.goto(f"{console.base}/console/credentials?app=scanner")
    page.click(f"tr[data-credential='{never.id}'] button:has-text('Revoke')")
    page.wait_for_url("**/console/credentials")
    assert str(creds.get_credential(never.id).state) == "revoked"

    # bans: add one, see it in force, lift it
    page.goto(f"{console.base}/console/bans")
    page.fill("#network", "198.51.100.0/24")
    page.fill("#reason", "scanning")
    page.click("button:has-text('Ban')")
    page.wait_for_url("**/console/bans")
    assert page.locator("tr[data-ban='198.51.100.0/24']").count() == 1
    page.click("tr[data-ban='198.51.100.0/24'] button:has-text('Lift')")
    page.wait_for_url("**/console/bans")
    assert page.locator("tr[data-ban='198.51.100.0/24']").count() == 0
    actions = [e.action for e in ops(console).journal.query(actor="web:ops@example.com")]
    assert {"credential.revoke", "ban.add", "ban.remove"} <= set(actions), actions
    context.close()

    viewer_totp = operator(console, "auditor@example.com", "viewer")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, "auditor@example.com", viewer_totp)
    page.goto(f"{console.base}/console/credentials?app=billing")
    page.click(f"tr[data-credential='{soon.id}'] button:has-text('Revoke')")
    assert "needs the operator role" in page.locator("main").inner_text()
    assert str(creds.get_credential(soon.id).state) == "expiring"     # nothing changed
    refused = page.request.post(f"{console.base}/console/credentials/{soon.id}/revoke", form={"csrf": "0" * 64})
    assert refused.status == 403
    context.close()


def test_an_owner_without_a_role_or_second_factor_is_kept_out(console: Console, browser: Any) -> None:
    console.server.credentials.create_account("plain@example.com", password=PASSWORD)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console.base}/signin")
    page.fill("#login", "plain@example.com")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]:has-text('Sign in')")
    page.wait_for_url("**/apps")
    response = page.goto(f"{console.base}/console")
    assert response.status == 403 and "no role" in page.locator("main").inner_text()
    console.server.credentials.set_account_policy("plain@example.com", role="admin")
    response = page.goto(f"{console.base}/console")
    assert response.status == 403 and "second factor" in page.locator("main").inner_text()
    context.close()
