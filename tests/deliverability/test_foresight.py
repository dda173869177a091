"""DMARC misalignment foreseen at submission: the verdict, its cache, its alert; then over real SMTP."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpgate.deliverability.foresight import Foresight
from smtpgate.delivery.keyring import keyring_from
from tests.cli.conftest import Cli
from tests.deliverability.conftest import make_config
from tests.delivery.fakedns import FakeDns, txt
from tests.smtp.server_harness import RunningServer, init_data_dir


def foresight(tmp_path: Path, dns: FakeDns, alerts: list, *, mode: str = "refuse", **deliverability) -> Foresight:
    config = make_config(tmp_path, delivery={"mode": "mx", "dns_servers": [dns.address], "routes": {"lab.example.com": "capture"}},
                         deliverability={"misaligned": mode, "outbound_addresses": ["192.0.2.25"], **deliverability})
    return Foresight(config, alert=alerts.append)


def test_reject_without_alignment_is_foreseen_and_alerted_once_a_day(tmp_path: Path, fake_dns: FakeDns) -> None:
    fake_dns.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=reject"))
    fake_dns.add("example.com", "TXT", txt("v=spf1 ip4:198.51.100.1 -all"))
    alerts: list = []
    f = foresight(tmp_path, fake_dns, alerts)
    verdict = asyncio.run(f.check("example.com", "alice@example.com"))
    assert verdict is not None and verdict.refuse and verdict.policy == "reject"
    assert "smtpgate dkim rotate example.com" in verdict.reply and "ip4:192.0.2.25 in the SPF record of example.com" in verdict.reply
    asked = f.resolver.queries
    again = asyncio.run(f.check("example.com", "bob@example.com"))
    assert again == verdict and f.resolver.queries == asked          # cached: no DNS at all
    assert [a.rule for a in alerts] == ["dmarc-misaligned"]             # once per domain and day
    assert alerts[0].dedupe_key.startswith("dmarc-misaligned:2") and alerts[0].dedupe_key.endswith(":example.com") and "publish a DKIM key" in alerts[0].summary
    warn = foresight(tmp_path / "w", fake_dns, [], mode="warn")
    assert not asyncio.run(warn.check("example.com", "alice@example.com")).refuse


def test_a_long_refusal_keeps_every_reply_line_within_512_octets() -> None:
    from smtpgate.deliverability.foresight import Verdict
    from smtpgate.smtp.protocol import Reply

    domain = ".".join(["a" * 60] * 4) + ".example"
    terms = " ".join(f"ip6:2001:db8:{n:x}::25" for n in range(12))
    reply = Reply(550, "5.7.26", Verdict(domain, "reject", terms, True).reply_lines).to_bytes()
    lines = reply.split(b"\r\n")[:-1]
    assert len(lines) > 1 and all(len(line) + 2 <= 512 for line in lines)
    assert b"".join(line[11:] for line in lines).replace(b" ", b"") == Verdict(domain, "reject", terms, True).reply.replace(" ", "").encode()


def test_alerts_of_two_days_stay_two_for_the_longest_names(tmp_path: Path, fake_dns: FakeDns) -> None:
    """The alert store keeps 255 characters of the dedupe key: the day must survive a 253-character domain."""
    from smtpgate.deliverability.foresight import Verdict

    alerts: list = []
    f = foresight(tmp_path, fake_dns, alerts)
    f.clock = lambda: 1_800_000_000.0
    domain = ".".join(["a" * 62] * 4) + ".ex"
    f._tell(Verdict(domain, "reject", "", True))
    f.clock = lambda: 1_800_000_000.0 + 86_400
    f._tell(Verdict(domain, "reject", "", True))
    assert len({a.dedupe_key[:255] for a in alerts}) == 2


def test_dns_answers_are_cached_across_verdicts(tmp_path: Path, fake_dns: FakeDns) -> None:
    fake_dns.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=reject"))
    fake_dns.add("example.com", "TXT", txt("v=spf1 ip4:198.51.100.1 -all"))
    f = foresight(tmp_path, fake_dns, [])
    for sender in ("alice@example.com", "bounce@elsewhere.example", "x@other.example"):   # three verdicts
        assert asyncio.run(f.check("example.com", sender)) is not None
    assert fake_dns.queries.count(("_dmarc.example.com", "TXT")) == 1


def test_what_aligns_is_not_refused(tmp_path: Path, fake_dns: FakeDns) -> None:
    fake_dns.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=quarantine"))
    fake_dns.add("example.com", "TXT", txt("v=spf1 ip4:192.0.2.25 -all"))
    f = foresight(tmp_path, fake_dns, [])
    assert asyncio.run(f.check("example.com", "alice@example.com")) is None          # SPF names the route
    verdict = asyncio.run(f.check("example.com", "bounce@elsewhere.example"))         # envelope not aligned
    assert verdict is not None and verdict.spf_fix == "" and verdict.policy == "quarantine"
    keyring_from(f.config).add("example.com", selector="s1", algorithm="ed25519")
    keyring_from(f.config).advance("example.com", lambda n, v: True)
    assert asyncio.run(f.check("example.com", "bounce@elsewhere.example")) is None     # a key now: DKIM aligns
    fake_dns.add("_dmarc.example.org", "TXT", txt("v=DMARC1; p=none"))
    assert asyncio.run(f.check("example.org", "a@example.org")) is None                # p=none refuses nothing
    fake_dns.add("_dmarc.lab.example.com", "TXT", txt("v=DMARC1; p=reject"))
    assert asyncio.run(f.check("lab.example.com", "a@lab.example.com")) is None        # captured: nothing leaves
    assert asyncio.run(f.check("ex ample.com", "a@example.com")) is None               # not a DNS name
    assert asyncio.run(foresight(tmp_path, fake_dns, [], mode="accept").check("example.com", "x@elsewhere.example")) is None


# ------------------------------------------------------------------ over SMTP


@pytest.fixture
def gateway(tmp_path: Path, fake_dns: FakeDns, request) -> Iterator[RunningServer]:
    config = init_data_dir(tmp_path / "data")
    text = config.read_text().replace('mode = "capture"', 'mode = "mx"', 1)
    text = text.replace("dns_servers = []", f'dns_servers = ["{fake_dns.address}"]', 1)
    text = text.replace('misaligned = "warn"', f'misaligned = "{request.param}"', 1)
    config.write_text(text.replace("outbound_addresses = []", 'outbound_addresses = ["192.0.2.25"]', 1))
    fake_dns.add("_dmarc.example.com", "TXT", txt("v=DMARC1; p=reject; rua=mailto:d@example.com"))
    fake_dns.add("example.com", "TXT", txt("v=spf1 include:_spf.provider.test -all"))
    fake_dns.add("_spf.provider.test", "TXT", txt("v=spf1 ip4:198.51.100.0/24 -all"))
    server = RunningServer(config)
    server.start()
    yield server
    server.close()


def send(server: RunningServer, secret: str, subject: str) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=server.client_context(), timeout=30) as client:
        client.login("alice@example.com", secret)
        client.sendmail("alice@example.com", ["bob@example.org"],
                        f"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nHi.\r\n".encode())


@pytest.mark.parametrize("gateway", ["refuse"], indirect=True)
def test_refuse_mode_answers_550_5_7_26_naming_the_missing_record(gateway: RunningServer) -> None:
    secret = gateway.account_with_app_password("alice@example.com")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(gateway, secret, "one")
    code, text = refused.value.smtp_code, refused.value.smtp_error.decode()
    assert code == 550 and text.startswith("5.7.26 example.com publishes DMARC p=reject")
    assert "a DKIM key for example.com (smtpgate dkim rotate example.com)" in text and "ip4:192.0.2.25" in text
    cli = Cli(gateway.config_path)
    cli.ok("dkim", "keygen", "example.com", "--selector", "s1", "--algorithm", "ed25519")
    keyring_from(gateway.config).advance("example.com", lambda n, v: True)   # as if the record were visible
    send(gateway, secret, "two")                                             # DKIM aligns now: accepted, no restart
    alerts = cli.ok("alerts", "list", "--json").json()
    assert [a["rule"] for a in alerts].count("dmarc-misaligned") == 1


@pytest.mark.parametrize("gateway", ["warn"], indirect=True)
def test_warn_mode_accepts_and_alerts_once(gateway: RunningServer) -> None:
    secret = gateway.account_with_app_password("alice@example.com")
    send(gateway, secret, "one")
    send(gateway, secret, "two")
    alerts = [a for a in Cli(gateway.config_path).ok("alerts", "list", "--json").json() if a["rule"] == "dmarc-misaligned"]
    assert len(alerts) == 1 and alerts[0]["details"]["domain"] == "example.com" and alerts[0]["severity"] == "warning"
    assert "smtpgate dkim rotate example.com" in alerts[0]["summary"]
