"""DNS checks against a real DNS server on loopback: addresses, MX, SRV discovery, silence."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from smtpgate.doctor import Status
from smtpgate.doctor.lookup import parse_server
from tests.delivery.fakedns import FakeDns
from tests.doctor.conftest import doctor
from tests.doctor.fakes import FakeSmtp


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    server.add("mail.doctor.test", "A", "127.0.0.1")
    server.add("example.test", "MX", "10 mx1.example.test.", "20 mx2.example.test.")
    server.add("nomail.test", "MX", "0 .")
    server.add("webonly.test", "A", "192.0.2.80")
    server.add("txtonly.test", "TXT", '"v=spf1 -all"')
    yield server
    server.stop()


def test_host_resolved_through_the_given_dns_server(dns: FakeDns) -> None:
    with FakeSmtp() as fake:
        report = doctor(str(fake.port), host="mail.doctor.test", dns_server=dns.address)
    check = report.get("dns")
    assert check.status is Status.PASS and check.data["addresses"] == ["127.0.0.1"]
    assert report.get(f"tcp:{fake.port}").data["address"] == "127.0.0.1"
    assert ("mail.doctor.test", "A") in dns.queries


def test_unknown_host_is_nxdomain(dns: FakeDns) -> None:
    report = doctor("587", host="smtp.doctor.test", dns_server=dns.address)
    check = report.get("dns")
    assert check.status is Status.FAIL and check.data["error"] == "nxdomain"
    assert "does not exist in DNS" in check.cause and "spelling" in check.fix
    assert [c.id for c in report.checks] == ["dns"]  # nothing to connect to: the run stops there


def test_name_without_address_records(dns: FakeDns) -> None:
    report = doctor("587", host="txtonly.test", dns_server=dns.address)
    check = report.get("dns")
    assert check.status is Status.FAIL and "has no A/AAAA record" in check.cause


def test_silent_dns_server_is_a_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        report = doctor("587", host="mail.doctor.test", dns_server=f"127.0.0.1:{port}", connect_timeout=0.5)
    check = report.get("dns")
    assert check.status is Status.FAIL and check.data["error"] == "timeout"
    assert "did not answer" in check.cause and "resolv.conf" in check.fix


@pytest.mark.parametrize(
    ("recipient", "status", "words"),
    [
        ("bob@example.test", Status.PASS, "MX 10 mx1.example.test, 20 mx2.example.test"),
        ("bob@nomail.test", Status.WARN, "null MX"),
        ("bob@webonly.test", Status.WARN, "implicit MX"),
        ("bob@nowhere.test", Status.WARN, "does not exist"),
    ],
)
def test_the_recipient_domain_is_advice_when_asked_for(dns: FakeDns, recipient: str, status: Status, words: str) -> None:
    domain = recipient.split("@")[1]
    report = doctor("1", host="127.0.0.1", dns_server=dns.address, send_to=recipient, check_recipient_domain=True)
    check = report.get(f"recipient-domain:{domain}")
    assert check.status is status and check.title == f"recipient domain {domain}"
    assert words in f"{check.summary} {check.cause}"
    assert "server" not in check.fix  # the recipient's domain is not the server's name
    assert not any(c.id == f"mx:{domain}" for c in report.checks)


def test_the_recipient_domain_is_not_looked_up_unless_asked(dns: FakeDns) -> None:
    report = doctor("1", host="127.0.0.1", dns_server=dns.address, send_to="bob@nowhere.test")
    assert not any("nowhere.test" in c.id for c in report.checks)


def test_address_finds_its_submission_server_by_srv(dns: FakeDns) -> None:
    with FakeSmtp() as fake:
        dns.add("_submission._tcp.example.test", "SRV", f"0 1 {fake.port} mail.doctor.test.")
        report = doctor(host="alice@example.test", dns_server=dns.address)
    assert report.get("mx:example.test").status is Status.PASS
    srv = report.get("srv")
    assert srv.status is Status.PASS and srv.data == {"server": "mail.doctor.test", "ports": [fake.port]}
    assert report.get(f"banner:{fake.port}").status is Status.PASS


def test_address_without_srv_says_to_give_the_server_name(dns: FakeDns) -> None:
    report = doctor(host="alice@webonly.test", dns_server=dns.address)
    srv = report.get("srv")
    assert srv.status is Status.FAIL and "SRV" in srv.cause and "smtp.webonly.test" in srv.fix


def test_dns_server_option_is_parsed() -> None:
    assert parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_server("[::1]:53") == ("::1", 53)
    assert parse_server("192.0.2.1") == ("192.0.2.1", 53)
    with pytest.raises(ValueError):
        parse_server("dns.example:53")
