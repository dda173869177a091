"""`smtpgate ban`, `audit` and `alerts` through the real entry point, against a real server."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.guard.servers import client, eventually, guarded_config, message
from tests.smtp.server_harness import RunningServer


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    server = RunningServer(guarded_config(tmp_path / "data", backend="memory"))
    server.start()
    yield server
    server.close()


def greeting(server: RunningServer, source: str) -> int:
    try:
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10, source_address=(source, 0)):
            return 220  # smtplib raises SMTPConnectError on any other greeting
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code


def test_ban_commands_refuse_bad_input_clearly(cli: Cli) -> None:
    bad = cli("ban", "add", "192.0.2.300/24")
    assert bad.code == 2 and "not a network" in bad.stderr and "CIDR" in bad.stderr
    duration = cli("ban", "add", "192.0.2.0/24", "--for", "soon")
    assert duration.code == 2 and "--for" in duration.stderr
    local = cli("ban", "add", "127.0.0.1")  # the default allow-list holds loopback
    assert local.code == 1 and "allow-listed 127.0.0.0/8" in local.stderr and "allow_networks" in local.stderr
    missing = cli("ban", "remove", "192.0.2.0/24")
    assert missing.code == 1 and "not banned" in missing.stderr and "ban list" in missing.stderr
    assert cli.ok("ban", "list").stdout.strip() == "No bans in force."


def test_ban_add_list_remove(cli: Cli) -> None:
    added = cli.ok("ban", "add", "2001:db8::/48", "--for", "2h", "--reason", "scanner", "--json").json()
    assert added["network"] == "2001:db8::/48" and added["reason"] == "scanner"
    cli.ok("ban", "add", "192.0.2.9")
    listed = cli.ok("ban", "list", "--json").json()
    assert [(b["network"], b["source"]) for b in listed] == [("192.0.2.9/32", "manual"), ("2001:db8::/48", "manual")]
    assert listed[1]["created_by"].startswith("cli")
    table = cli.ok("ban", "list").stdout
    assert "2001:db8::/48" in table and "scanner" in table
    cli.ok("ban", "remove", "192.0.2.9/32")
    assert [b["network"] for b in cli.ok("ban", "list", "--json").json()] == ["2001:db8::/48"]


def test_a_cli_ban_reaches_the_running_server(running: RunningServer) -> None:
    cli = Cli(running.config_path)
    assert greeting(running, "127.0.0.50") == 220
    cli.ok("ban", "add", "127.0.0.48/30", "--for", "10m")
    assert eventually(lambda: greeting(running, "127.0.0.50"), lambda code: code == 421) == 421
    assert greeting(running, "127.0.0.52") == 220  # outside the /30
    cli.ok("ban", "remove", "127.0.0.48/30")
    assert eventually(lambda: greeting(running, "127.0.0.50"), lambda code: code == 220) == 220


def test_audit_shows_who_did_what_from_where(running: RunningServer) -> None:
    login = "audited@example.com"
    secret = running.account_with_app_password(login)
    credential = running.credentials.list_credentials(account=login)[-1].id
    with client(running, "127.0.0.1") as smtp:
        smtp.login(login, secret)
        smtp.sendmail(login, ["a@example.org", "b@example.org"], message(login))
    with client(running, "127.0.0.7") as smtp, pytest.raises(smtplib.SMTPAuthenticationError):
        smtp.login("AUDITED@example.com", secret[:-4] + "xxxx")
    cli = Cli(running.config_path)
    events = eventually(
        lambda: cli.ok("audit", "--json", "--account", login).json(), lambda found: len(found) >= 3
    )
    by_kind = {(e["event"], e["result"]): e for e in events}
    ok = by_kind[("auth", "ok")]
    assert (ok["credential_id"], ok["remote_ip"], ok["tls"], ok["listener"], ok["network"]) == (
        credential, "127.0.0.1", "TLSv1.3", "submission", "127.0.0.0/24",
    )
    assert ok["mechanism"] in ("PLAIN", "LOGIN")
    sent = by_kind[("message", "ok")]
    assert sent["reason"] == "accepted" and sent["details"]["rcpts"] == 2 and sent["credential_id"] == credential
    failed = [e for e in events if e["result"] == "fail"]
    assert failed and all(e["remote_ip"] == "127.0.0.7" and e["login"] == "AUDITED@example.com" for e in failed)
    assert {e["reason"] for e in failed} == {"bad-secret"}
    assert [e["result"] for e in cli.ok("audit", "--json", "--result", "fail", "--account", login).json()] == ["fail"] * len(failed)
    assert all(e["credential_id"] == credential for e in cli.ok("audit", "--json", "--credential", credential).json())
    assert cli.ok("audit", "--since", "1h", "--event", "message").stdout.count("accepted") == 1
    text = cli.ok("audit").stdout + running.log()
    assert secret not in text and secret[:-4] not in text
    # the inventory agrees with the audit
    info = eventually(lambda: running.credentials.get_credential(credential),  # use is written in batches
                      lambda found: found.use_count == 1)
    assert (info.last_used_ip, info.use_count) == ("127.0.0.1", 1)
    assert running.runtime.audit_store.usage(credential)[1:] == ("127.0.0.1", 1)


def test_audit_and_alerts_refuse_bad_options(cli: Cli) -> None:
    for args, word in ((("audit", "--result", "maybe"), "--result"), (("audit", "--since", "1x"), "--since"),
                       (("audit", "--event", "mail"), "--event"), (("alerts", "list", "--since", "x"), "--since")):
        result = cli(*args)
        assert result.code == 2 and word in result.stderr, args
    assert cli.ok("alerts", "list").stdout.strip() == "No alerts."
    assert cli.ok("audit", "--json").json() == []
