"""Reputation watched: blocklist listing and delisting alerts, delivery failure rises, both on /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx

from smtpgate.deliverability.reputation import BlocklistWatch, OutcomeWatch, outcome_class
from smtpgate.mailauth.resolver import Resolver
from smtpgate.metrics import exposition
from tests.cli.conftest import Cli
from tests.delivery.fakedns import FakeDns, txt
from tests.delivery.harness import wait_until
from tests.smtp.server_harness import RunningServer, init_data_dir


def test_listing_and_delisting_raise_one_alert_each(tmp_path: Path, fake_dns: FakeDns) -> None:
    alerts: list = []
    watch = BlocklistWatch(["192.0.2.25", "192.0.2.26"], ["bl.example.net"], Resolver([("127.0.0.1", fake_dns.port)]),
                           tmp_path / "reputation.json", alerts.append)
    assert [x.status for x in watch.check()] == ["clear", "clear"] and alerts == []
    fake_dns.add("25.2.0.192.bl.example.net", "A", "127.0.0.2").add("25.2.0.192.bl.example.net", "TXT", txt("spam trap hits"))
    watch.check()
    assert [(a.rule, a.severity) for a in alerts] == [("dnsbl-listed", "critical")]
    assert alerts[0].summary.startswith("192.0.2.25 is listed on bl.example.net (127.0.0.2): spam trap hits")
    assert 'smtpgate_dnsbl_listed{address="192.0.2.25",zone="bl.example.net"} 1.0' in exposition().decode()
    assert 'smtpgate_dnsbl_listed{address="192.0.2.26",zone="bl.example.net"} 0.0' in exposition().decode()
    watch.check()
    again = BlocklistWatch(watch.addresses, watch.zones, watch.resolver, watch.state_file, alerts.append)
    again.check()  # a restart: the state was kept, no second alert
    assert len(alerts) == 1
    fake_dns.set("25.2.0.192.bl.example.net", "A")
    fake_dns.set("25.2.0.192.bl.example.net", "TXT")
    watch.check()
    assert [a.rule for a in alerts] == ["dnsbl-listed", "dnsbl-delisted"]
    assert 'smtpgate_dnsbl_listed{address="192.0.2.25",zone="bl.example.net"} 0.0' in exposition().decode()


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_sudden_rise_of_failures_alerts_once_per_window() -> None:
    clock, alerts = Clock(), []
    watch = OutcomeWatch(window=900, factor=3, minimum=5, alert=alerts.append, clock=clock)
    for _ in range(4):  # four quiet windows: 1 failure in 20
        for n in range(20):
            watch.record("bob@rise.example", "permanent" if n == 0 else "delivered", "550 5.1.1 no" if n == 0 else "250 ok")
        clock.now += 900
    assert alerts == []
    for n in range(10):
        watch.record(f"u{n}@rise.example", "temporary", "421 4.7.0 slow down")
    assert [a.rule for a in alerts] == ["delivery-failures"] and "rise.example" in alerts[0].summary
    assert "421 4.7.0 slow down" in alerts[0].summary and alerts[0].details["failures"] == 5
    text = exposition().decode()
    assert 'smtpgate_delivery_outcomes_total{domain="rise.example",result="throttled"} 10.0' in text
    assert 'smtpgate_delivery_outcomes_total{domain="rise.example",result="failed"} 4.0' in text


def test_alert_keys_keep_their_time_within_255_characters() -> None:
    """The alert store keeps 255 characters of the dedupe key: a long name must not hide a later alert."""
    from datetime import UTC, datetime

    from smtpgate.mailauth.dnsbl import Listing

    long_name = ".".join(["b" * 62] * 4) + ".ex"
    clock, alerts = Clock(), []
    watch = OutcomeWatch(window=900, factor=3, minimum=1, alert=alerts.append, clock=clock)
    watch.record(f"x@{long_name}", "permanent", "550 no")
    clock.now += 900
    for _ in range(30):
        watch.record(f"x@{long_name}", "delivered", "250 ok")
    clock.now += 900
    watch.record(f"x@{long_name}", "permanent", "550 no")
    blocklist = BlocklistWatch([], [], Resolver([("127.0.0.1", 9)]), Path("/nonexistent"), alerts.append)
    for day in (1, 2):
        blocklist._raise(Listing("192.0.2.25", long_name, "listed", ("127.0.0.2",)), datetime(2026, 12, day, tzinfo=UTC))
    keys = [a.dedupe_key[:255] for a in alerts]
    assert len(keys) == 4 and len(set(keys)) == 4


def test_outcome_classes() -> None:
    assert outcome_class("temporary", "451 4.7.1 greylisted") == "throttled"
    assert outcome_class("temporary", "452 4.2.2 mailbox full") == "deferred"
    assert outcome_class("temporary", "451 4.4.1 mx1.example.org[192.0.2.9]: connection refused") == "deferred"  # ours
    assert outcome_class("temporary", "421 4.7.0 too many connections") == "throttled"
    assert outcome_class("permanent", "550 5.7.1 no") == "failed" and outcome_class("delivered", "250 ok") == "delivered"


def test_the_server_alerts_on_listing_and_shows_it_on_metrics(tmp_path: Path, fake_dns: FakeDns) -> None:
    config = init_data_dir(tmp_path / "data")
    text = config.read_text().replace('mode = "capture"', 'mode = "mx"', 1)
    text = text.replace("dns_servers = []", f'dns_servers = ["{fake_dns.address}"]', 1)
    text = text.replace("outbound_addresses = []", 'outbound_addresses = ["192.0.2.25"]', 1)
    config.write_text(text.replace('dnsbl = []', 'dnsbl = ["bl.example.net"]', 1).replace('check_interval = "1h"', 'check_interval = "1s"', 1))
    fake_dns.add("25.2.0.192.bl.example.net", "A", "127.0.0.2")
    server = RunningServer(config)
    server.start()
    try:
        cli = Cli(config)
        alert = wait_until(lambda: [a for a in cli.ok("alerts", "list", "--json").json() if a["rule"] == "dnsbl-listed"],
                           timeout=60, what="the listing alert")
        assert alert[0]["details"] == {"address": "192.0.2.25", "zone": "bl.example.net", "codes": ["127.0.0.2"], "reason": ""}
        host, _, port = server.config.admin.listen.rpartition(":")
        metrics = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
        assert 'smtpgate_dnsbl_listed{address="192.0.2.25",zone="bl.example.net"} 1.0' in metrics
        policy = httpx.get(f"http://{host}:{port}/.well-known/mta-sts.txt", timeout=10)   # no [deliverability.mta_sts] mx
        assert policy.status_code == 404 and "[deliverability.mta_sts] mx" in policy.text
        fake_dns.set("25.2.0.192.bl.example.net", "A")
        wait_until(lambda: any(a["rule"] == "dnsbl-delisted" for a in cli.ok("alerts", "list", "--json").json()),
                   timeout=60, what="the delisting alert")
    finally:
        server.close()
