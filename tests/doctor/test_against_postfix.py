"""`smtpgate doctor` against Postfix + Dovecot SASL (../shared/peers/postfix-dovecot.sh): any server, not only ours."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smtpgate.doctor import Status
from tests.conftest import need
from tests.delivery.fakedns import FakeDns
from tests.doctor.conftest import doctor
from tests.smtp.server_harness import free_port

SCRIPT = Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "postfix-dovecot.sh"
USER, PASSWORD = "alice@example.test", "correct-horse-battery-peer"


@dataclass
class Peer:
    port: int
    cafile: str


@pytest.fixture(scope="module")
def postfix() -> Iterator[Peer]:
    need(SCRIPT.exists(), f"{SCRIPT} is missing")
    need(os.geteuid() == 0, "the Postfix peer needs root (it runs postfix and dovecot as their users)")
    need(shutil.which("postfix") is not None and shutil.which("dovecot") is not None,
         "Postfix/Dovecot are not installed (scripts/install-test-clients.sh installs them as root)")
    base = Path(tempfile.mkdtemp(prefix="smtpgate-doctor-postfix-", dir="/tmp"))  # outside pytest's 0700 dirs
    os.chmod(base, 0o755)
    env = {**os.environ, "BASE": str(base), "PORT": str(free_port()), "SMTP_USER": USER, "SMTP_PASS": PASSWORD,
           "IN_FLOW_DELAY": "0"}
    log = base / "peer-script.log"
    try:
        # a file, not a pipe: the daemons inherit the script's stdout and would hold a pipe open forever
        with log.open("ab") as out:
            started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, timeout=120)
        need(started.returncode == 0, f"the Postfix peer did not start:\n{log.read_text(errors='replace')}")
        yield Peer(int(env["PORT"]), str(base / "tls" / "cert.pem"))
    finally:
        with log.open("ab") as out:
            subprocess.run(["bash", str(SCRIPT), "clean"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                           stderr=subprocess.STDOUT, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    server.add("example.net", "MX", "10 mx.example.net.")
    yield server
    server.stop()


def test_healthy_postfix_with_a_test_message(postfix: Peer, dns: FakeDns) -> None:
    report = doctor(f"{postfix.port}:starttls", user=USER, password=PASSWORD, cafile=postfix.cafile,
                    send_to="bob@example.net", dns_server=dns.address, timeout=10.0)
    assert report.ok, report.render()
    port = postfix.port
    assert report.get(f"banner:{port}").summary.startswith("220 peer-postfix.localdomain ESMTP")
    assert "STARTTLS" in report.get(f"ehlo:{port}").data["features"]
    mechanisms = report.get(f"auth-mechanisms:{port}")
    assert mechanisms.status is Status.PASS and mechanisms.data == {"before_tls": [], "after_tls": ["PLAIN", "LOGIN"]}
    cert = report.get(f"cert:{port}")
    assert cert.status is Status.PASS and "self-signed, trusted via --cafile" in cert.summary
    assert report.get("auth").status is Status.PASS
    send = report.get("send")
    assert send.status is Status.PASS and "Ok: queued as" in send.summary
    assert PASSWORD not in "\n".join(report.transcript)


def test_postfix_wrong_password(postfix: Peer) -> None:
    report = doctor(f"{postfix.port}:starttls", user=USER, password="not-the-password", cafile=postfix.cafile,
                    timeout=10.0)
    auth = report.get("auth")
    assert auth.status is Status.FAIL and auth.data["code"] == 535 and auth.data["enhanced"] == "5.7.8"
    assert "does not accept this login and password" in auth.cause


def test_postfix_self_signed_certificate_without_cafile(postfix: Peer) -> None:
    report = doctor(f"{postfix.port}:starttls", user=USER, password=PASSWORD, timeout=10.0)
    cert = report.get(f"cert:{postfix.port}")
    assert cert.status is Status.FAIL and cert.data["self_signed"] is True
    assert "self-signed" in cert.summary and "--cafile" in cert.fix
    assert report.get("auth").status is Status.SKIP
