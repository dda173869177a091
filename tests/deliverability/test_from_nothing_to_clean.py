"""A domain from nothing to a clean `doctor --domain`, through the real commands and a running server.

The server's admin listener serves the MTA-STS policy (behind an HTTPS proxy, as in production);
the zone is a DNS server on loopback that the test fills with what `smtpgate dns records --json`
says, as an operator would. Run with -s to see the outputs (docs/deliverability.md shows them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, fast_hashing
from tests.deliverability.conftest import TlsProxy, publish
from tests.delivery.fakedns import FakeDns, txt
from tests.delivery.harness import make_pki
from tests.smtp.server_harness import RunningServer, free_port


@pytest.fixture
def zone() -> Iterator[FakeDns]:
    server = FakeDns().start()
    yield server
    server.stop()


def show(result) -> None:  # type: ignore[no-untyped-def]
    print(result.stdout, end="")


def test_from_nothing_to_a_clean_doctor(tmp_path: Path, zone: FakeDns) -> None:
    data = tmp_path / "data"
    ports = [str(free_port()) for _ in range(3)]
    Cli(None).ok("init", "--data-dir", str(data), "--hostname", "gw.example.com", "--submission-port", ports[0],
                 "--submissions-port", ports[1], "--admin-port", ports[2])
    config = data / "smtpgate.toml"
    fast_hashing(config)
    pki = make_pki(tmp_path / "pki", ["mta-sts.example.com"])
    proxy = TlsProxy(pki.server_context(), int(ports[2]))
    text = config.read_text()
    for old, new in (
        ('mode = "capture"', 'mode = "mx"'),
        ("dns_servers = []", f'dns_servers = ["127.0.0.1:{zone.port}"]'),
        ("outbound_addresses = []", 'outbound_addresses = ["192.0.2.25"]'),
        ("dnsbl = []", 'dnsbl = ["bl.example.net"]'),
        ("mx = []", 'mx = ["mx1.example.com"]'),
        ("mta_sts = true", f'mta_sts = true\nmta_sts_policy_host = "127.0.0.1:{proxy.port}"\nmta_sts_ca_file = "{pki.ca_file}"'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text)
    cli = Cli(config)
    server = RunningServer(config)
    server.start()
    try:
        print("$ smtpgate doctor --domain example.com    # nothing published yet")
        before = cli("doctor", "--domain", "example.com")
        show(before)
        assert before.code == 1 and "FAIL  spf" in before.stdout and "FAIL  dkim" in before.stdout

        print("$ smtpgate dkim rotate example.com")
        show(cli.ok("dkim", "rotate", "example.com"))
        print("$ smtpgate dns records example.com")
        show(cli.ok("dns", "records", "example.com"))
        plan = cli.ok("dns", "records", "example.com", "--json").json()
        publish(zone, plan["records"])
        # what is not smtpgate's to say: the domain's inbound MX and the address's reverse DNS
        zone.set("example.com", "MX", "10 mx1.example.com.").set("mx1.example.com", "A", "192.0.2.30")
        zone.set("25.2.0.192.in-addr.arpa", "PTR", "gw.example.com.").set("gw.example.com", "A", "192.0.2.25")
        zone.set("bl.example.net", "A", "127.0.0.1")

        print("$ smtpgate dkim rotate example.com    # again, once the record is published")
        rotated = cli.ok("dkim", "rotate", "example.com")
        show(rotated)
        assert "is visible in DNS and signs from now on" in rotated.stdout

        print("$ smtpgate doctor --domain example.com")
        clean = cli("doctor", "--domain", "example.com")
        show(clean)
        assert clean.code == 0, clean.stdout + clean.stderr
        assert "FAIL" not in clean.stdout and "WARN" not in clean.stdout
        checks = {c["id"]: c["status"] for c in cli("doctor", "--domain", "example.com", "--json").json()["checks"]}
        assert set(checks.values()) == {"pass"} and {"spf", "dmarc", "mta-sts", "tls-rpt", "ptr:192.0.2.25",
                                                       "dnsbl:bl.example.net:192.0.2.25"} <= set(checks)

        zone.set("25.2.0.192.bl.example.net", "A", "127.0.0.2").set("25.2.0.192.bl.example.net", "TXT", txt("spam trap hits"))
        print("$ smtpgate doctor --domain example.com    # the address got listed")
        listed = cli("doctor", "--domain", "example.com")
        show(listed)
        assert listed.code == 1 and "192.0.2.25 is listed on bl.example.net (127.0.0.2): spam trap hits" in listed.stdout
    finally:
        server.close()
        proxy.stop()
