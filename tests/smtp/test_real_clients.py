"""swaks, curl and nodemailer, the clients people really use, over real TLS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import need
from tests.smtp.server_harness import PASSWORD, RunningServer

CLIENTS = Path(__file__).parents[1] / "clients"


def captured(server: RunningServer, subject: str) -> list:
    return [m for m in server.runtime.capture.list() if m.subject == subject]


def run(args: list[str], env: dict[str, str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=input is None, input=input, timeout=60, env={**os.environ, **(env or {})})


# ------------------------------------------------------------------- swaks


def swaks(server: RunningServer, login: str, secret: str, subject: str, *, implicit: bool, sender: str | None = None):
    need(shutil.which("swaks") is not None, "swaks is not installed (apt-get install swaks libnet-ssleay-perl)")
    port = server.submissions_port if implicit else server.submission_port
    return run([
        "swaks", "--server", "localhost", "--port", str(port), "--tlsc" if implicit else "--tls",
        "--tls-verify", "--tls-ca-path", str(server.ca),
        "--auth", "PLAIN", "--auth-user", login, "--auth-password", secret,
        "--from", sender or login, "--to", "rcpt@example.org", "--header", f"Subject: {subject}",
        "--helo", "swaks.test", "--timeout", "20",
    ])


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_swaks_sends(server: RunningServer, implicit: bool) -> None:
    secret = server.account_with_app_password("swaks@example.com")
    subject = f"swaks-{implicit}"
    result = swaks(server, "swaks@example.com", secret, subject, implicit=implicit)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Ok: queued as" in result.stdout
    assert len(captured(server, subject)) == 1


def test_swaks_revoked_and_wrong_sender(server: RunningServer) -> None:
    secret = server.account_with_app_password("swaks2@example.com")
    wrong = swaks(server, "swaks2@example.com", secret, "swaks-wrong", implicit=False, sender="ceo@example.com")
    assert wrong.returncode != 0 and "553 5.7.1" in wrong.stdout
    cred = server.credentials.list_credentials(account="swaks2@example.com")[-1]
    server.credentials.revoke(cred.id)
    revoked = swaks(server, "swaks2@example.com", secret, "swaks-revoked", implicit=False)
    assert revoked.returncode != 0 and "535 5.7.8" in revoked.stdout
    assert not captured(server, "swaks-revoked") and not captured(server, "swaks-wrong")


# -------------------------------------------------------------------- curl


def curl(server: RunningServer, login: str, secret: str, subject: str, *, implicit: bool, sender: str | None = None):
    need(shutil.which("curl") is not None, "curl is not installed")
    port = server.submissions_port if implicit else server.submission_port
    scheme = "smtps" if implicit else "smtp"
    body = f"From: {sender or login}\r\nTo: rcpt@example.org\r\nSubject: {subject}\r\n\r\nSent by curl\r\n".encode()
    # the secret goes in a config file on stdin-like fd, never on argv
    netrc = server.config_path.parent / f"curl-{subject}.conf"
    netrc.write_text(f'user = "{login}:{secret}"\n')
    netrc.chmod(0o600)
    return run([
        "curl", "-sS", "--ssl-reqd", f"{scheme}://localhost:{port}", "--cacert", str(server.ca),
        "--config", str(netrc), "--login-options", "AUTH=PLAIN",
        "--mail-from", sender or login, "--mail-rcpt", "rcpt@example.org", "--upload-file", "-",
    ], input=body)


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_curl_sends(server: RunningServer, implicit: bool) -> None:
    secret = server.account_with_app_password("curl@example.com")
    subject = f"curl-{implicit}"
    result = curl(server, "curl@example.com", secret, subject, implicit=implicit)
    assert result.returncode == 0, result.stderr
    assert len(captured(server, subject)) == 1


def test_curl_expired_credential_is_refused(server: RunningServer) -> None:
    from datetime import timedelta

    server.credentials.create_account("curlexp@example.com")
    issued = server.credentials.create_app_password("curlexp@example.com", "old", expires_in=timedelta(days=1))
    server.credentials.rotate(issued.credential.id, overlap=timedelta(0))  # ends the old one now
    result = curl(server, "curlexp@example.com", issued.secret, "curl-expired", implicit=False)
    assert result.returncode == 67, result.stderr  # CURLE_LOGIN_DENIED
    assert not captured(server, "curl-expired")
    assert "reason=expired" in server.log()


# -------------------------------------------------------------- nodemailer


def nodemailer(server: RunningServer, login: str, secret: str, subject: str, *, implicit: bool):
    need(shutil.which("node") is not None, "node is not installed")
    need((CLIENTS / "node_modules" / "nodemailer").is_dir(), "nodemailer is not installed (scripts/install-test-clients.sh)")
    result = run(["node", str(CLIENTS / "send.js")], env={
        "SMTP_PORT": str(server.submissions_port if implicit else server.submission_port),
        "SMTP_SECURE": "1" if implicit else "0",
        "SMTP_USER": login, "SMTP_PASS": secret, "SMTP_CA": str(server.ca),
        "SMTP_FROM": login, "SMTP_TO": "rcpt@example.org", "SMTP_SUBJECT": subject,
    })
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_nodemailer_sends(server: RunningServer, implicit: bool) -> None:
    secret = server.account_with_app_password("node@example.com")
    subject = f"nodemailer-{implicit}"
    outcome = nodemailer(server, "node@example.com", secret, subject, implicit=implicit)
    assert outcome["ok"], outcome
    assert outcome["response"].startswith("250 2.0.0 Ok: queued as")
    assert len(captured(server, subject)) == 1


def test_nodemailer_wrong_secret(server: RunningServer) -> None:
    server.account_with_app_password("node2@example.com")
    outcome = nodemailer(server, "node2@example.com", "sgp_" + "a" * 39, "nodemailer-wrong", implicit=False)
    assert outcome == {"ok": False, "code": 535, "response": "535 5.7.8 Authentication credentials invalid"}


# -------------------------------------------------------------------- mutt


def mutt(server: RunningServer, login: str, secret: str, subject: str, *, implicit: bool):
    """mutt with its defaults: GSASL picks SCRAM-SHA-256 and sends the login as authzid too."""
    need(shutil.which("mutt") is not None, "mutt is not installed (apt-get install mutt)")
    port = server.submissions_port if implicit else server.submission_port
    home = server.config_path.parent / f"mutt-{subject}"
    home.mkdir()
    muttrc = home / "muttrc"
    muttrc.write_text(
        f'set smtp_url = "{"smtps" if implicit else "smtp"}://{login.replace("@", "%40")}@localhost:{port}/"\n'
        f'set smtp_pass = "{secret}"\n'
        f'set ssl_force_tls = yes\nset ssl_ca_certificates_file = "{server.ca}"\n'
        f'set from = "{login}"\nset record = ""\n'
    )
    muttrc.chmod(0o600)
    return run(["mutt", "-n", "-F", str(muttrc), "-s", subject, "rcpt@example.org"], input=b"Sent by mutt\n",
               env={"HOME": str(home), "TERM": "dumb"})


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_mutt_with_default_settings_logs_in_with_scram(server: RunningServer, implicit: bool) -> None:
    login = f"mutt-{int(implicit)}@example.com"
    server.credentials.create_account(login, password=PASSWORD)
    app = server.credentials.create_app_password(login, "mutt").secret
    for n, secret in enumerate((PASSWORD, app)):
        result = mutt(server, login, secret, f"mutt-{implicit}-{n}", implicit=implicit)
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(captured(server, f"mutt-{implicit}-{n}")) == 1
    audited = f'"mechanism":"SCRAM-SHA-256","login":"{login}"'
    deadline = time.monotonic() + 15
    while audited not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # the audit writer logs its batch a moment later (every 0.25 s)
    assert audited in server.log()  # the audit's JSON line
    wrong = mutt(server, login, "not-" + PASSWORD, f"mutt-{implicit}-wrong", implicit=implicit)
    assert wrong.returncode != 0 and not captured(server, f"mutt-{implicit}-wrong")
