"""What an attacker or a careless user types into the login field, seen from the logs and the audit.

A real server: a pasted app password or client secret must not reach the text log, the
JSON audit lines, the audit database or `smtpgate audit --json`; CR, LF and ESC in a login
(sent after STARTTLS, before authenticating) must not forge a log line; the admin side's
client_id neither.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import httpx

from smtpgate.audit import events as ev
from smtpgate.credentials import app_passwords
from tests.guard.servers import eventually
from tests.smtp.raw_client import RawClient
from tests.smtp.server_harness import RunningServer

FORGED_LINE = "2026-01-01 00:00:00,000 INFO [1] smtpgate.session: auth ok login=ceo@example.com"


def plain(server: RunningServer, login: str, secret: str) -> int:
    raw = RawClient(server.submission_port)
    assert raw.reply()[0] == 220
    raw.cmd("EHLO client.test")
    assert raw.cmd("STARTTLS")[0] == 220
    raw.starttls(server.client_context())
    raw.cmd("EHLO client.test")
    code, _ = raw.cmd("AUTH PLAIN " + base64.b64encode(f"\0{login}\0{secret}".encode()).decode())
    raw.close()
    return code


def log_lines(server: RunningServer) -> list[str]:
    return server.log().splitlines()


def test_a_pasted_secret_and_an_injected_line_reach_no_log_and_no_audit(server: RunningServer) -> None:
    owner_secret = server.account_with_app_password("paste@example.com")
    injected = f"mallory@example.com\r\n{FORGED_LINE}\r\n{{\"event\":\"auth\",\"result\":\"ok\"}}\x1b[2J"
    assert plain(server, owner_secret, owner_secret) == 535   # the app password in both fields
    assert plain(server, injected, "wrong-password-1") == 535
    events = eventually(
        lambda: [e for e in server.runtime.audit_store.query(kind=ev.AUTH, result=ev.FAIL, limit=1000)
                 if e.event.login.startswith(("sgp_", "mallory"))],
        lambda found: len(found) >= 2,
    )
    logins = sorted(e.event.login for e in events)
    assert logins[1].startswith("sgp_[redacted:") and owner_secret not in logins[1]
    assert logins[0].startswith("mallory@example.com")
    eventually(lambda: server.log(), lambda text: text.count("mallory") >= 2)  # the text line and the JSON line
    text = server.log()
    assert owner_secret not in text and owner_secret[4:20] not in text
    assert not any(line.startswith(FORGED_LINE[:20]) for line in log_lines(server))
    assert not any(line.startswith('{"event":"auth","result":"ok"}') for line in log_lines(server))
    assert "\x1b" not in text
    for line in log_lines(server):
        if line.startswith("{"):
            json.loads(line)  # every JSON line is whole
    cli = subprocess.run([sys.executable, "-m", "smtpgate", "audit", "--json", "--limit", "1000"],
                         capture_output=True, text=True, env={**os.environ, "SMTPGATE_CONFIG": str(server.config_path)},
                         timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert owner_secret not in cli.stdout and "sgp_[redacted:" in cli.stdout


def test_a_client_secret_pasted_as_client_id_reaches_no_log(server: RunningServer) -> None:
    client_secret = "sgc_" + app_passwords.generate()[4:]  # the same shape: prefix and 39 base32 characters
    host, _, port = server.config.admin.listen.rpartition(":")
    for client_id in (client_secret, f"svc\r\n{FORGED_LINE}"):
        response = httpx.post(f"http://{host}:{port}/oauth/token", timeout=10,
                              data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"})
        assert response.status_code == 401
    eventually(lambda: server.log(), lambda text: text.count("token request refused") >= 2)
    text = server.log()
    assert client_secret not in text and client_secret[:-3] not in text and "sgc_[redacted:" in text
    assert not any(line.startswith(FORGED_LINE[:20]) for line in log_lines(server))
