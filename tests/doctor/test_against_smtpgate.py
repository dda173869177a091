"""`smtpgate doctor` against a real smtpgate server, through the real entry point where it matters."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from smtpgate import pki
from smtpgate.doctor import Status
from tests.cli.conftest import Cli
from tests.conftest import need
from tests.delivery.fakedns import FakeDns
from tests.doctor.conftest import doctor
from tests.smtp.server_harness import PASSWORD, RunningServer


@pytest.fixture(scope="module")
def dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    server.add("example.org", "MX", "10 mx.example.org.")
    yield server
    server.stop()


def ports(server: RunningServer) -> list[str]:
    return ["--port", str(server.submission_port), "--port", f"{server.submissions_port}:tls"]


def test_an_accepted_message_passes_whatever_the_recipient_domain(server: RunningServer, dns: FakeDns) -> None:
    """example.net has no MX in this DNS: the server is not to blame, and the run passes."""
    secret = server.account_with_app_password("doctor5@example.com")
    args = ["doctor", "127.0.0.1", *ports(server), "--user", "doctor5@example.com", "--password-env", "DOC_PW",
            "--cafile", str(server.ca), "--send-to", "bob@nowhere.example.net", "--dns-server", dns.address, "--json"]
    plain = Cli(None)(*args, env={"DOC_PW": secret})
    assert plain.code == 0, plain.stdout + plain.stderr
    assert not any("nowhere" in c["id"] for c in plain.json()["checks"])
    asked = Cli(None)(*args, "--check-recipient-domain", env={"DOC_PW": secret})
    assert asked.code == 0, asked.stdout + asked.stderr
    checks = {c["id"]: c for c in asked.json()["checks"]}
    advice = checks["recipient-domain:nowhere.example.net"]
    assert advice["title"] == "recipient domain nowhere.example.net" and advice["status"] == "warn"
    assert checks["send"]["status"] == "pass" and asked.json()["ok"] is True
    human = Cli(None)(*args[:-1], "--check-recipient-domain", env={"DOC_PW": secret})
    assert human.code == 0 and "FAIL" not in human.stdout and "recipient domain nowhere.example.net" in human.stdout


def test_healthy_server_with_a_test_message(server: RunningServer, dns: FakeDns) -> None:
    secret = server.account_with_app_password("doctor1@example.com")
    cli = Cli(None)
    result = cli("doctor", "127.0.0.1", *ports(server), "--user", "doctor1@example.com", "--password-env", "DOC_PW",
                 "--cafile", str(server.ca), "--send-to", "bob@example.org", "--dns-server", dns.address, "--json",
                 "--verbose", env={"DOC_PW": secret})
    assert result.code == 0, result.stdout + result.stderr
    report = result.json()
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert report["ok"] is True and set(statuses.values()) == {"pass"}
    sub, subs = server.submission_port, server.submissions_port
    assert not any(c.startswith(("mx:", "recipient-domain:")) for c in statuses)  # not asked for
    for check in ("dns", f"tcp:{sub}", f"banner:{sub}", f"ehlo:{sub}", f"tls:{sub}", f"cert:{sub}",
                  f"auth-mechanisms:{sub}", f"tls:{subs}", f"cert:{subs}", "auth", "send"):
        assert statuses[check] == "pass", check
    checks = {c["id"]: c for c in report["checks"]}
    assert checks[f"tls:{sub}"]["data"]["version"] in ("TLSv1.3", "TLSv1.2")
    mechanisms = checks[f"auth-mechanisms:{sub}"]["data"]
    assert mechanisms["before_tls"] == [] and {"PLAIN", "LOGIN"} <= set(mechanisms["after_tls"])
    assert checks["auth"]["data"]["port"] == sub  # one login, on the first port that can carry it
    queued = checks["send"]["data"]["reply"].rsplit(" ", 1)[1]
    transcript = "\n".join(report["transcript"])
    assert secret not in result.stdout + result.stderr and "AUTH PLAIN <redacted>" in transcript
    # the final confirmation: the message is really there
    captured = Cli(server.config_path).ok("capture", "list", "--json").json()
    mine = [m for m in captured if m["id"] == queued]
    assert mine and mine[0]["subject"] == "smtpgate doctor test message" and mine[0]["rcpt_to"] == ["bob@example.org"]


def test_healthy_text_output_reads_well(server: RunningServer) -> None:
    secret = server.account_with_app_password("doctor2@example.com")
    result = Cli(None)("doctor", "127.0.0.1", *ports(server), "--user", "doctor2@example.com", "--password-stdin",
                       "--cafile", str(server.ca), input=secret + "\n")
    assert result.code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "smtpgate doctor: 127.0.0.1"
    assert any(line.startswith("  PASS  auth") and "authenticated as doctor2@example.com with PLAIN" in line
               for line in lines)
    assert lines[-1].endswith(": all good") and "cause:" not in result.stdout


def test_wrong_password_is_a_535_with_its_causes(server: RunningServer) -> None:
    server.account_with_app_password("doctor3@example.com")
    result = Cli(None)("doctor", "127.0.0.1", "--port", str(server.submission_port), "--user", "doctor3@example.com",
                       "--password-stdin", "--cafile", str(server.ca), input="sgp_not-the-right-one\n")
    assert result.code == 1
    assert "  FAIL  auth" in result.stdout and "535 5.7.8" in result.stdout
    words = " ".join(result.stdout.split())  # cause and fix are wrapped for the terminal
    assert "cause: The server does not accept this login and password." in words
    assert "which account or alias" in words and "every client got the new one" in words
    assert "sgp_not-the-right-one" not in result.stdout + result.stderr


def test_app_password_required_is_a_534(server: RunningServer) -> None:
    server.credentials.create_account("doctor4@example.com", password=PASSWORD, require_app_passwords=True)
    report = doctor(str(server.submission_port), user="doctor4@example.com", password=PASSWORD, cafile=str(server.ca))
    auth = report.get("auth")
    assert auth.status is Status.FAIL and auth.data["code"] == 534 and auth.data["enhanced"] == "5.7.9"
    assert "two-factor" in auth.cause and "smtpgate app-password create" in auth.fix


def test_untrusted_local_ca_without_cafile(server: RunningServer) -> None:
    report = doctor(str(server.submission_port), user="x@example.com", password="whatever-it-is")
    cert = report.get(f"cert:{server.submission_port}")
    assert cert.status is Status.FAIL and "untrusted issuer" in cert.summary
    assert "tls/ca.pem" in cert.fix
    assert report.get("auth").status is Status.SKIP


def _replace_server_cert(server: RunningServer, names: list[str], not_before: datetime, not_after: datetime) -> None:
    """A certificate from the data dir's own CA, written before the server starts."""
    tls = server.config_path.parent / "tls"
    ca_cert = pki.load_certificate(tls / "ca.pem")
    ca_key = pki.load_private_key(tls / "ca.key")
    cert_pem, key_pem = pki.issue_server_cert(ca_cert, ca_key, names, not_before, not_after)
    (tls / "server.pem").write_bytes(cert_pem + pki.cert_to_pem(ca_cert))
    (tls / "server.key").write_bytes(key_pem)


def test_expired_certificate(fresh_server: RunningServer) -> None:
    now = datetime.now(timezone.utc)
    _replace_server_cert(fresh_server, ["localhost", "127.0.0.1"], now - timedelta(days=90), now - timedelta(days=2))
    fresh_server.start()
    report = doctor(str(fresh_server.submission_port), f"{fresh_server.submissions_port}:tls",
                    cafile=str(fresh_server.ca), user="x@example.com", password="not-sent-anyway")
    for port in (fresh_server.submission_port, fresh_server.submissions_port):
        cert = report.get(f"cert:{port}")
        assert cert.status is Status.FAIL and cert.summary.startswith("NOT trusted: expired")
        assert cert.data["problems"] == ["expired"] and cert.data["days_left"] < 0
        assert f"expired on {(now - timedelta(days=2)):%Y-%m-%d}" in cert.cause and "renew" in cert.fix
        assert report.get(f"tls:{port}").status is Status.PASS  # TLS itself works
    assert report.get("auth").status is Status.SKIP and not report.ok


def test_certificate_for_another_name(fresh_server: RunningServer) -> None:
    now = datetime.now(timezone.utc)
    _replace_server_cert(fresh_server, ["mail.other.test"], now - timedelta(days=1), now + timedelta(days=60))
    fresh_server.start()
    result = Cli(None)("doctor", "127.0.0.1", "--port", str(fresh_server.submission_port),
                       "--cafile", str(fresh_server.ca), "--json")
    assert result.code == 1
    cert = next(c for c in result.json()["checks"] if c["id"] == f"cert:{fresh_server.submission_port}")
    assert cert["status"] == "fail" and cert["data"]["problems"] == ["hostname"]
    assert "not valid for 127.0.0.1" in cert["summary"]
    assert "The certificate is for mail.other.test, not 127.0.0.1" in cert["cause"]


def _greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(200)


def test_banned_source_is_a_421(fresh_server: RunningServer) -> None:
    """With `smtpgate ban add` (the guard concern), the doctor's own address is banned."""
    cli = Cli(fresh_server.config_path)
    need(cli("ban", "--help").code == 0, "`smtpgate ban` (the guard concern) is not available")
    config = fresh_server.config_path.read_text()
    assert "allow_networks = [" in config  # loopback is allow-listed by default: the test bans it on purpose
    fresh_server.config_path.write_text(re.sub(r"allow_networks = \[.*?\]", "allow_networks = []", config))
    fresh_server.start()
    cli.ok("ban", "add", "127.0.0.1/32", "--for", "1h")
    deadline = time.monotonic() + 30  # the server picks bans up every [guard] sync_interval
    while not _greeting(fresh_server.submission_port).startswith(b"421") and time.monotonic() < deadline:
        time.sleep(0.2)
    report = doctor(str(fresh_server.submission_port), cafile=str(fresh_server.ca))
    banner = report.get(f"banner:{fresh_server.submission_port}")
    assert banner.status is Status.FAIL and banner.data["code"] == 421
    assert "rate limited or banned" in banner.cause and "lift the ban" in banner.fix
