"""`smtpgate doctor` against Postfix + Dovecot SASL (scripts/peers/postfix-dovecot.sh): any server, not only ours."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpgate.doctor import Status
from tests.delivery.fakedns import FakeDns
from tests.doctor.conftest import doctor
from tests.peer import Peer, postfix_peer

USER, PASSWORD = "alice@example.test", "correct-horse-battery-peer"


@pytest.fixture(scope="module")
def postfix() -> Iterator[Peer]:
    with postfix_peer(USER, PASSWORD) as peer:
        yield peer


@pytest.fixture(scope="module")
def dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    server.add("example.net", "MX", "10 mx.example.net.")
    yield server
    server.stop()


def test_healthy_postfix_with_a_test_message(postfix: Peer, dns: FakeDns) -> None:
    report = doctor(f"{postfix.port}:starttls", user=USER, password=PASSWORD, cafile=str(postfix.cafile),
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
    report = doctor(f"{postfix.port}:starttls", user=USER, password="not-the-password", cafile=str(postfix.cafile),
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
