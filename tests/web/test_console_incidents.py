"""Incidents, silent devices and the queue in the operators' console, in a real Chromium, against
one server that relays to a sink on loopback which always answers 451: accepted mail stays
queued, so "held", "released", "retried" and "deleted" are about real messages.

An operator opens an incident on a credential that sent a message (confirmation, reason), reads
the report and closes it; a viewer sees it and cannot open one; the inventory marks legacy
devices silent for a month; hold, release, retry and delete work through the queue page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from smtpgate.credentials.devices import DeviceRequest
from smtpgate.ops import Actor, Operations
from smtpgate.store.models import CredentialRow
from tests.delivery.harness import make_pki, relay_to_sink, wait_until
from tests.delivery.sink import SinkServer
from tests.guard.servers import client, eventually, guarded_config
from tests.smtp.server_harness import PASSWORD, RunningServer, wait_for_port
from tests.web.conftest import Console, check_axe, shoot
from tests.web.test_operators_console import operator, sign_in

ATTACKER = "127.0.0.9"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    root = tmp_path_factory.mktemp("console-incidents")
    pki = make_pki(root / "pki", ["sink.example.test"])
    sink = SinkServer(tls_context=pki.server_context(),
                      script=lambda stage, arg: "451 4.3.0 try later" if stage == "mail" else None)
    sink.start()
    config = guarded_config(root / "data", backend="memory")
    relay_to_sink(config, sink.port, pki.ca_file, retry_initial="1h", retry_max="2h")
    server = RunningServer(config)
    server.start()
    port = int(server.config.admin.listen.rpartition(":")[2])
    wait_for_port(port, server.proc, server.log_path)  # type: ignore[arg-type]
    try:
        yield Console(server, f"http://localhost:{port}")
    finally:
        server.close()
        sink.stop()


def ops(console: Console) -> Operations:
    return Operations(console.server.runtime)


def send(console: Console, source: str, login: str, secret: str, subject: str) -> str:
    """One message over STARTTLS; its queue id, once its first (deferred) attempt is over."""
    with client(console.server, source) as smtp:
        smtp.login(login, secret)
        smtp.mail(login)
        assert smtp.rcpt("someone@example.org")[0] == 250
        code, reply = smtp.data(f"From: {login}\r\nTo: someone@example.org\r\nSubject: {subject}\r\n\r\nHello\r\n".encode())
        assert code == 250, reply
    message_id = reply.decode().rsplit(" ", 1)[-1]
    wait_until(lambda: attempts(console, message_id) >= 1, timeout=20, what=f"the first attempt of {message_id}")
    return message_id


def attempts(console: Console, message_id: str) -> int:
    return ops(console).queue.show(Actor.local(), message_id).entry.state.attempts


def audited(console: Console, credential_id: str, message_id: str) -> None:
    """The audit writer logs in batches: wait until it holds the message."""
    eventually(lambda: {str(e.event.details.get("id")) for e in
                        console.server.runtime.audit_store.query(credential_id=credential_id, kind="message")},
               lambda found: message_id in found)


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf]").first.input_value())


def test_an_operator_opens_an_incident_from_the_console_reads_the_report_and_closes_it(console: Console, browser: Any) -> None:
    login, creds = "leaky@example.com", console.server.credentials
    creds.create_account(login, password=PASSWORD)
    leaked = creds.create_app_password(login, "build-server")
    spam = send(console, ATTACKER, login, leaked.secret, "spam from a leaked secret")
    audited(console, leaked.credential.id, spam)

    totp = operator(console, "oncall@example.com", "operator")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, "oncall@example.com", totp)
    page.goto(f"{console.base}/console/credentials?app=build-server")
    page.click(f"tr[data-credential='{leaked.credential.id}'] a:has-text('Open incident')")
    page.wait_for_url("**/console/incidents/new?credential=*")
    assert "build-server" in page.locator("main").inner_text()
    check_axe(page, "incident-open")
    # the confirmation is required: without it nothing happens
    unconfirmed = page.request.post(f"{console.base}/console/incidents",
                                    form={"csrf": csrf_of(page), "credential": leaked.credential.id, "reason": "x"})
    assert unconfirmed.status == 422 and "confirmation" in unconfirmed.text()
    assert str(creds.get_credential(leaked.credential.id).state) != "revoked"
    page.fill("#reason", "found in a public gist")
    page.check("#confirm")
    page.click("button:has-text('Open the incident')")
    page.wait_for_url(re.compile(r".*/console/incidents/\d+\?done=incident-opened$"))
    incident_id = int(page.url.split("/")[-1].split("?")[0])

    # the report: what was revoked, held, banned; the timeline
    assert str(creds.get_credential(leaked.credential.id).state) == "revoked"
    assert page.locator(f"#revoked li[data-credential='{leaked.credential.id}']").count() == 1
    assert page.locator(f"#held li[data-message='{spam}']").count() == 1
    assert page.locator(f"#banned li[data-ban='{ATTACKER}/32']").count() == 1
    assert page.locator("#incident-reason").inner_text() == "found in a public gist"
    timeline = page.locator("#timeline tbody").inner_text()
    assert spam in timeline and ATTACKER in timeline and "held" in timeline
    assert ops(console).queue.show(Actor.local(), spam).held
    check_axe(page, "incident")
    shoot(page, "console-incident")
    page.goto(f"{console.base}/console/incidents")
    assert page.locator(f"tr[data-incident='{incident_id}']").count() == 1
    check_axe(page, "incidents")
    page.click("nav[aria-label=\"Operators' console\"] a:has-text('Accounts')")
    page.click(f"tr[data-account='{login}'] a:has-text('Open incident')")
    page.wait_for_url("**/console/incidents/new?account=*")
    assert "every credential of the account" in page.locator("main").inner_text()

    # a viewer reads the report but cannot open or close one
    viewer = operator(console, "watcher@example.com", "viewer")
    seen = browser.new_context(viewport={"width": 1280, "height": 900})
    watcher = seen.new_page()
    sign_in(watcher, console, "watcher@example.com", viewer)
    watcher.goto(f"{console.base}/console/credentials")
    assert watcher.locator("a:has-text('Open incident')").count() == 0
    assert watcher.goto(f"{console.base}/console/incidents/{incident_id}").status == 200
    assert watcher.locator(f"#held li[data-message='{spam}']").count() == 1
    assert watcher.locator("form[action$='/close']").count() == 0
    other = creds.create_app_password(login, "laptop")
    refused = watcher.request.post(f"{console.base}/console/incidents", form={
        "csrf": csrf_of(watcher), "credential": other.credential.id, "reason": "x", "confirm": "yes"})
    assert refused.status == 403 and "operator role" in refused.text()
    refused = watcher.request.post(f"{console.base}/console/incidents/{incident_id}/close",
                                   form={"csrf": csrf_of(watcher), "held": "release"})
    assert refused.status == 403
    assert str(creds.get_credential(other.credential.id).state) != "revoked"
    seen.close()

    # closing releases what was held
    page.goto(f"{console.base}/console/incidents/{incident_id}")
    page.check("input[name=held][value=release]")
    page.click("button:has-text('Close the incident')")
    page.wait_for_url("**?done=incident-closed")
    assert page.locator("#incident-state").inner_text() == "closed"
    closed = ops(console).incidents.get(Actor.local(), incident_id)
    assert (closed.state, closed.resolution, closed.closed_by) == ("closed", "released", "web:oncall@example.com")
    assert not ops(console).queue.show(Actor.local(), spam).held
    context.close()


def test_the_inventory_marks_legacy_devices_silent_for_a_month(console: Console, browser: Any) -> None:
    creds = console.server.credentials
    creds.create_account("office@example.com")
    device = DeviceRequest(name="printer-basement", network="192.0.2.40", allow_from="scanner@example.com",
                           allow_to=("@example.com",), auth="plain", tls="none")
    quiet = creds.create_device("office@example.com", device).credential
    busy = creds.create_device("office@example.com", DeviceRequest(
        name="copier-3f", network="192.0.2.41", allow_from="copier@example.com", allow_to=("@example.com",),
        auth="none", tls="legacy")).credential
    with console.server.runtime.store.session() as db:   # installed 40 days ago, never sent since
        row = db.get(CredentialRow, quiet.id)
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(days=40)

    totp = operator(console, "fleetops@example.com", "operator")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, "fleetops@example.com", totp)
    page.goto(f"{console.base}/console/credentials?account=office@example.com")
    quiet_row, busy_row = (page.locator(f"tr[data-credential='{c.id}']") for c in (quiet, busy))
    assert "Silent device" in quiet_row.locator(".silent-device").inner_text()
    assert "no TLS" in quiet_row.locator(".weaknesses").inner_text()
    assert busy_row.locator(".silent-device").count() == 0
    assert "weak TLS" in busy_row.locator(".weaknesses").inner_text()
    assert "no AUTH" in busy_row.locator(".weaknesses").inner_text()
    page.select_option("#show", "silent")
    page.click("button:has-text('Filter')")
    shown = set(page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.credential)"))
    assert shown == {quiet.id}
    assert {c.id for c in ops(console).credentials.silent_devices(Actor.local())} == {quiet.id}
    check_axe(page, "silent-devices")
    context.close()


def test_hold_release_retry_and_delete_real_queued_messages_from_the_queue_page(console: Console, browser: Any) -> None:
    login, creds = "sender@example.com", console.server.credentials
    creds.create_account(login, password=PASSWORD)
    first = send(console, "127.0.0.1", login, PASSWORD, "first")
    second = send(console, "127.0.0.1", login, PASSWORD, "second")
    queue = ops(console).queue

    totp = operator(console, "queueops@example.com", "operator")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, console, "queueops@example.com", totp)

    def act(message_id: str, action: str) -> None:
        page.goto(f"{console.base}/console/queue")
        page.click(f"tr[data-message='{message_id}'] button:has-text('{action}')")
        page.wait_for_url("**/console/queue")

    act(first, "Hold")
    assert queue.show(Actor.local(), first).held
    assert "held" in page.locator(f"tr[data-message='{first}']").inner_text()
    check_axe(page, "queue")
    act(first, "Release")
    assert not queue.show(Actor.local(), first).held
    before = attempts(console, first)
    act(first, "Retry")
    wait_until(lambda: attempts(console, first) > before, timeout=20, what="the retried attempt")
    # deleting mail is an admin's, as in the API: refused to the operator, done by an admin
    page.goto(f"{console.base}/console/queue")
    page.click(f"tr[data-message='{second}'] button:has-text('Delete')")
    assert "admin role" in page.locator("main").inner_text()
    assert second in {m.entry.message.id for m in queue.list(Actor.local())}
    creds.set_account_policy("queueops@example.com", role="admin")
    act(second, "Delete")
    listed = {m.entry.message.id for m in queue.list(Actor.local())}
    assert second not in listed and first in listed
    actions = [e.action for e in ops(console).journal.query(actor="web:queueops@example.com")]
    assert {"queue.hold", "queue.release", "queue.retry", "queue.delete"} <= set(actions), actions
    context.close()
