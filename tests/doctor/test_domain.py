"""`doctor --domain`: every finding, for a correct zone and for each way it breaks, against DNS on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpgate.delivery.dkim import generate_key, txt_record
from smtpgate.doctor.domain import DomainOptions, Expectation, check_domain
from smtpgate.doctor.report import Status
from tests.delivery.fakedns import FakeDns, txt
from tests.delivery.harness import make_pki
from tests.delivery.test_worker import PolicyServer

KEY = generate_key("example.com", "s1", "ed25519")
KEY_NAME, KEY_TXT = txt_record(KEY)
OTHER_TXT = txt_record(generate_key("example.com", "s1", "ed25519"))[1]
POLICY = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    return make_pki(tmp_path_factory.mktemp("pki"), ["mta-sts.example.com"])


@pytest.fixture(scope="module")
def policy_server(pki) -> Iterator[PolicyServer]:
    server = PolicyServer(pki, POLICY)
    yield server
    server.stop()


def clean_zone(dns: FakeDns) -> FakeDns:
    dns.add("example.com", "TXT", txt("v=spf1 ip4:192.0.2.25 include:_spf.example.com ~all"))
    dns.add("_spf.example.com", "TXT", txt("v=spf1 ip4:198.51.100.0/24 -all"))
    dns.add(KEY_NAME, "TXT", txt(KEY_TXT))
    dns.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=reject; rua=mailto:dmarc@example.com"))
    dns.add("example.com", "MX", "10 mx1.example.com.").add("mx1.example.com", "A", "192.0.2.30")
    dns.add("_mta-sts.example.com", "TXT", txt("v=STSv1; id=20261201"))
    dns.add("_smtp._tls.example.com", "TXT", txt("v=TLSRPTv1; rua=mailto:tls@example.com"))
    dns.add("_submissions._tcp.example.com", "SRV", "0 1 465 gw.example.com.")
    dns.add("_submission._tcp.example.com", "SRV", "0 1 587 gw.example.com.")
    dns.add("autoconfig.example.com", "CNAME", "gw.example.com.")
    dns.add("autodiscover.example.com", "CNAME", "gw.example.com.")
    dns.add("25.2.0.192.in-addr.arpa", "PTR", "gw.example.com.").add("gw.example.com", "A", "192.0.2.25")
    dns.add("bl.example.net", "A", "127.0.0.1")  # the blocklist zone exists; 192.0.2.25 is not on it
    return dns


@pytest.fixture
def zone() -> Iterator[FakeDns]:
    server = clean_zone(FakeDns()).start()
    yield server
    server.stop()


def expectation() -> Expectation:
    return Expectation(
        route="mx", spf_term="ip4:192.0.2.25", dkim=[("s1", KEY_TXT.rpartition("p=")[2], "active")],
        mta_sts_policy=POLICY,
        submission={"_submissions._tcp.example.com": "0 1 465 gw.example.com.", "_submission._tcp.example.com": "0 1 587 gw.example.com."},
        outbound_addresses=["192.0.2.25"], dnsbl=["bl.example.net"],
        client_setup={"autoconfig.example.com": "gw.example.com.", "autodiscover.example.com": "gw.example.com."},
    )


def run(zone: FakeDns, pki, policy_server: PolicyServer, expect: Expectation | None = None):
    return check_domain(DomainOptions("example.com", expect if expect is not None else expectation(),
                                      dns_server=("127.0.0.1", zone.port), policy_host=f"127.0.0.1:{policy_server.port}",
                                      cafile=str(pki.ca_file)))


def test_a_correct_zone_passes_every_check(zone, pki, policy_server) -> None:
    report = run(zone, pki, policy_server)
    assert [(c.id, c.status) for c in report.checks] == [
        ("spf", Status.PASS), ("dkim:s1", Status.PASS), ("dmarc", Status.PASS), ("mta-sts", Status.PASS),
        ("tls-rpt", Status.PASS), ("srv:submissions", Status.PASS), ("srv:submission", Status.PASS),
        ("autoconfig", Status.PASS), ("autodiscover", Status.PASS), ("ptr:192.0.2.25", Status.PASS), ("dnsbl:bl.example.net:192.0.2.25", Status.PASS),
    ], report.render()
    assert report.ok
    assert report.get("spf").summary.endswith("(1 of 10 lookups)")
    assert report.get("dmarc").summary == "p=reject, aligned through DKIM and SPF"
    assert report.get("ptr:192.0.2.25").summary == "192.0.2.25 -> gw.example.com -> 192.0.2.25"
    assert ("mta-sts.example.com", "/.well-known/mta-sts.txt") in policy_server.requests


def eleven_includes(dns: FakeDns) -> None:
    dns.set("example.com", "TXT", txt("v=spf1 ip4:192.0.2.25 " + " ".join(f"include:i{n}.example.com" for n in range(11)) + " ~all"))
    for n in range(11):
        dns.set(f"i{n}.example.com", "TXT", txt(f"v=spf1 ip4:10.0.{n}.0/24 -all"))


BROKEN: list[tuple[str, Callable[[FakeDns], object], str, Status, str]] = [
    ("spf missing", lambda d: d.set("example.com", "TXT"), "spf", Status.FAIL, "publishes no SPF record"),
    ("spf twice", lambda d: d.add("example.com", "TXT", txt("v=spf1 a -all")), "spf", Status.FAIL, "2 SPF records: they conflict"),
    ("spf invalid", lambda d: d.set("example.com", "TXT", txt("v=spf1 ip4:192.0.2.300 -all")), "spf", Status.FAIL, "the SPF record is invalid"),
    ("spf 11 lookups", eleven_includes, "spf", Status.FAIL, "needs 11 DNS lookups; the limit is 10"),
    ("spf void lookups", lambda d: d.set("example.com", "TXT", txt("v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com "
                                                                   "ip4:192.0.2.25 ~all")), "spf", Status.FAIL,
     "permerror: more than 2 lookups found nothing"),
    ("spf dangling include", lambda d: d.set("_spf.example.com", "TXT"), "spf", Status.FAIL, "permerror: _spf.example.com publishes no SPF record"),
    ("spf without the route", lambda d: d.set("example.com", "TXT", txt("v=spf1 ip4:198.51.100.1 ~all")), "spf", Status.FAIL,
     "does not name this server's route (mx: ip4:192.0.2.25)"),
    ("dkim missing", lambda d: d.set(KEY_NAME, "TXT"), "dkim:s1", Status.FAIL, "s1._domainkey.example.com is not published"),
    ("dkim mismatch", lambda d: d.set(KEY_NAME, "TXT", txt(OTHER_TXT)), "dkim:s1", Status.FAIL, "publishes a different key"),
    ("dkim invalid", lambda d: d.set(KEY_NAME, "TXT", txt("v=DKIM1; k=ed25519; p=%%%")), "dkim:s1", Status.FAIL, "p= is not valid base64"),
    ("dmarc missing", lambda d: d.set("_dmarc.example.com", "TXT"), "dmarc", Status.WARN, "publishes no DMARC record"),
    ("dmarc twice", lambda d: d.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=none")), "dmarc", Status.FAIL, "2 DMARC records"),
    ("dmarc invalid", lambda d: d.set("_dmarc.example.com", "TXT", txt("v=DMARC1; p=bounce")), "dmarc", Status.FAIL, "expected none, quarantine or reject"),
    ("mta-sts txt missing", lambda d: d.set("_mta-sts.example.com", "TXT"), "mta-sts", Status.FAIL, "_mta-sts.example.com is not published"),
    ("mta-sts mx outside", lambda d: d.set("example.com", "MX", "10 mx9.example.com."), "mta-sts", Status.FAIL, "MX mx9.example.com is not named by the policy"),
    ("tls-rpt missing", lambda d: d.set("_smtp._tls.example.com", "TXT"), "tls-rpt", Status.WARN, "is not published"),
    ("srv missing", lambda d: d.set("_submissions._tcp.example.com", "SRV"), "srv:submissions", Status.WARN, "is not published"),
    ("srv elsewhere", lambda d: d.set("_submission._tcp.example.com", "SRV", "0 1 587 other.example.net."), "srv:submission", Status.WARN,
     "not at this server"),
    ("autoconfig missing", lambda d: d.set("autoconfig.example.com", "CNAME"), "autoconfig", Status.WARN, "is not published"),
    ("autoconfig elsewhere", lambda d: d.set("autoconfig.example.com", "CNAME", "other.example.net."), "autoconfig", Status.WARN,
     "points at other.example.net, not at this server (gw.example.com)"),
    ("autodiscover elsewhere", lambda d: d.set("autodiscover.example.com", "CNAME").set("autodiscover.example.com", "A", "198.51.100.7"),
     "autodiscover", Status.WARN, "not this server's"),
    ("ptr missing", lambda d: d.set("25.2.0.192.in-addr.arpa", "PTR"), "ptr:192.0.2.25", Status.FAIL, "has no PTR record"),
    ("ptr not forward-confirmed", lambda d: d.set("gw.example.com", "A", "192.0.2.99"), "ptr:192.0.2.25", Status.FAIL,
     "does not resolve back to 192.0.2.25"),
    ("dnsbl listed", lambda d: d.add("25.2.0.192.bl.example.net", "A", "127.0.0.2").add(
        "25.2.0.192.bl.example.net", "TXT", txt("listed: spam seen from this address")), "dnsbl:bl.example.net:192.0.2.25", Status.FAIL,
     "192.0.2.25 is listed on bl.example.net (127.0.0.2): listed: spam seen from this address"),
    ("dnsbl refuses", lambda d: d.add("25.2.0.192.bl.example.net", "A", "127.255.255.254"), "dnsbl:bl.example.net:192.0.2.25", Status.WARN,
     "refused the query"),
]


def test_an_address_record_of_the_servers_own_passes_for_autodiscover(zone, pki, policy_server) -> None:
    zone.set("autodiscover.example.com", "CNAME").set("autodiscover.example.com", "A", "192.0.2.25")
    check = run(zone, pki, policy_server).get("autodiscover")
    assert check.status is Status.PASS and check.summary == "autodiscover.example.com -> 192.0.2.25"


@pytest.mark.parametrize("mutate, check_id, status, words", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_broken_record_is_found_and_explained(zone, pki, policy_server, mutate, check_id, status, words) -> None:
    mutate(zone)
    report = run(zone, pki, policy_server)
    check = report.get(check_id)
    assert check.status is status and words in check.summary, report.render()
    assert check.cause and check.fix
    assert report.ok is (status is not Status.FAIL)
    others = [c for c in report.checks if c.id != check_id and c.status is not Status.PASS]
    assert all(c.id == "dmarc" for c in others), report.render()  # nothing else flagged (DMARC may follow SPF)


def test_dmarc_reject_without_any_alignment_fails(zone, pki, policy_server) -> None:
    zone.set("example.com", "TXT", txt("v=spf1 ip4:198.51.100.1 -all"))
    zone.set(KEY_NAME, "TXT", txt(OTHER_TXT))
    dmarc = run(zone, pki, policy_server).get("dmarc")
    assert dmarc.status is Status.FAIL and "can align neither DKIM nor SPF" in dmarc.summary
    assert "smtpgate dkim rotate example.com" in dmarc.fix and "ip4:192.0.2.25" in dmarc.fix
    zone.set("_dmarc.example.com", "TXT", txt("v=DMARC1; p=none"))
    assert run(zone, pki, policy_server).get("dmarc").status is Status.PASS  # p=none rejects nothing


def test_a_smarthost_named_by_an_include_that_covers_its_address_passes(zone, pki, policy_server) -> None:
    """The route's term is a:HOST: what counts is that SPF passes for HOST's addresses, as at a receiver."""
    zone.set("example.com", "TXT", txt("v=spf1 include:_spf.provider.test ~all"))
    zone.set("_spf.provider.test", "TXT", txt("v=spf1 ip4:198.51.100.0/24 -all"))
    zone.set("smtp.provider.test", "A", "198.51.100.7")
    relay = Expectation(route="relay", spf_term="a:smtp.provider.test", dkim=expectation().dkim)
    assert run(zone, pki, policy_server, relay).get("spf").status is Status.PASS
    zone.set("smtp.provider.test", "A", "203.0.113.7")   # the smarthost moved out of the provider's range
    spf = run(zone, pki, policy_server, relay).get("spf")
    assert spf.status is Status.FAIL and "does not name this server's route (relay: a:smtp.provider.test)" in spf.summary


def test_an_unreachable_policy_fails(zone, pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", ["mta-sts.example.com"])  # a CA the doctor does not trust
    server = PolicyServer(other, POLICY)
    try:
        check = run(zone, pki, server).get("mta-sts")
    finally:
        server.stop()
    assert check.status is Status.FAIL and "cannot be used" in check.summary and "valid certificate" in check.fix


def test_without_a_config_records_are_still_checked(zone, pki, policy_server) -> None:
    report = run(zone, pki, policy_server, Expectation())
    assert report.get("spf").status is Status.PASS and report.get("dkim").status is Status.SKIP
    assert report.get("dmarc").summary == "p=reject" and report.get("mta-sts").status is Status.PASS
    assert not any(c.id.startswith(("ptr", "dnsbl")) for c in report.checks)


def test_no_answer_from_dns_is_no_verdict() -> None:
    """A silent resolver must not end in "all good": exit 3, as for a server that cannot be reached."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:   # bound, never answers
        silent.bind(("127.0.0.1", 0))
        report = check_domain(DomainOptions("example.com", expectation(), dns_server=silent.getsockname(), timeout=0.2))
    assert not report.ok and report.exit_code == 3, report.render()
    dns = report.get("dns")
    assert dns.status is Status.FAIL and "nothing could be checked" in dns.summary and "dns_servers" in dns.fix
