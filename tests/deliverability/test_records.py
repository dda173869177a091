"""The records a domain should publish, derived from the route and the keyring."""

from __future__ import annotations

from pathlib import Path

from smtpgate.deliverability.records import plan_for, zone_fragment
from smtpgate.delivery.keyring import keyring_from
from tests.cli.conftest import Cli
from tests.deliverability.conftest import make_config


def by_purpose(plan, purpose: str):
    return [r for r in plan.records if r.purpose == purpose]


def test_relay_route_names_the_smarthost_and_every_published_key(tmp_path: Path) -> None:
    config = make_config(tmp_path, delivery={"mode": "relay", "relay": {"host": "smtp.provider.test"}},
                         deliverability={"mta_sts": {"mx": ["mx1.example.com", "*.mx.example.com"], "mode": "enforce"}})
    keyring = keyring_from(config)
    first = keyring.add("example.com", selector="s1", algorithm="ed25519")
    second = keyring.add("example.com", selector="s2", algorithm="rsa", bits=1024)
    plan = plan_for(config, "Example.COM.")
    assert plan.route == "relay" and plan.spf_term == "a:smtp.provider.test"
    assert [r.value for r in by_purpose(plan, "spf")] == ["v=spf1 a:smtp.provider.test ~all"]
    assert sorted(r.name for r in by_purpose(plan, "dkim")) == [first.dns_name, second.dns_name]
    dmarc = by_purpose(plan, "dmarc")[0]
    assert dmarc.name == "_dmarc.example.com" and "p=none" in dmarc.value and "rua=mailto:postmaster@example.com" in dmarc.value
    assert plan.mta_sts_policy == "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mx.example.com\r\nmax_age: 604800\r\n"
    sts = {r.type: r for r in by_purpose(plan, "mta-sts")}
    assert sts["TXT"].name == "_mta-sts.example.com" and sts["TXT"].value.startswith("v=STSv1; id=")
    assert sts["CNAME"].value == "gw.example.test."
    assert by_purpose(plan, "tls-rpt")[0].value == "v=TLSRPTv1; rua=mailto:postmaster@example.com"
    srv = {r.name: r.value for r in by_purpose(plan, "srv")}
    assert srv == {"_submissions._tcp.example.com": "0 1 2465 gw.example.test.", "_submission._tcp.example.com": "0 1 2587 gw.example.test."}
    assert {r.name for r in by_purpose(plan, "autoconfig")} == {"autoconfig.example.com", "autodiscover.example.com"}
    zone = zone_fragment(plan)
    assert 'example.com. 3600 IN TXT "v=spf1 a:smtp.provider.test ~all"' in zone
    assert "_submissions._tcp.example.com. 3600 IN SRV 0 1 2465 gw.example.test." in zone
    long_key = next(r for r in by_purpose(plan, "dkim") if "k=rsa" in r.value)
    assert f'{long_key.name}. 3600 IN TXT "' in zone


def test_a_smarthost_given_by_address_is_named_by_address(tmp_path: Path) -> None:
    plan = plan_for(make_config(tmp_path, delivery={"mode": "relay", "relay": {"host": "198.51.100.4"}}), "example.com")
    assert plan.spf_term == "ip4:198.51.100.4" and plan.outbound_addresses == []
    assert plan_for(make_config(tmp_path, delivery={"mode": "relay", "relay": {"host": "smtp.provider.test"}},
                                deliverability={"relay_spf": "include:_spf.provider.test"}), "example.com").spf_term == "include:_spf.provider.test"


def test_the_policy_id_changes_with_the_policy(tmp_path: Path) -> None:
    a = plan_for(make_config(tmp_path, deliverability={"mta_sts": {"mx": ["mx1.example.com"]}}), "example.com")
    b = plan_for(make_config(tmp_path, deliverability={"mta_sts": {"mx": ["mx2.example.com"]}}), "example.com")
    ids = [next(r.value for r in p.records if r.name == "_mta-sts.example.com") for p in (a, b)]
    assert ids[0] != ids[1]
    assert not plan_for(make_config(tmp_path), "example.com").mta_sts_policy


def test_direct_delivery_names_the_outbound_addresses(tmp_path: Path) -> None:
    config = make_config(tmp_path, delivery={"mode": "mx"}, deliverability={"outbound_addresses": ["192.0.2.25", "2001:db8::25"]})
    plan = plan_for(config, "example.com")
    assert by_purpose(plan, "spf")[0].value == "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 ~all"
    assert plan.outbound_addresses == ["192.0.2.25", "2001:db8::25"]
    bare = plan_for(make_config(tmp_path, delivery={"mode": "mx"}), "example.com")
    assert bare.spf_term == "a:gw.example.test" and any("outbound_addresses" in n for n in bare.notes)
    assert any("dkim rotate example.com" in n for n in bare.notes)


def test_captured_domains_need_no_sending_records(tmp_path: Path) -> None:
    plan = plan_for(make_config(tmp_path, delivery={"mode": "relay", "relay": {"host": "smtp.provider.test"},
                                                    "routes": {"lab.example.com": "capture"}}), "lab.example.com")
    assert plan.route == "capture" and not by_purpose(plan, "spf") and not by_purpose(plan, "dkim")
    assert "captured" in plan.notes[0]


def test_cli_table_zone_and_json(cli: Cli) -> None:
    text = cli.config.read_text().replace('mode = "capture"', 'mode = "relay"', 1)
    cli.config.write_text(text.replace('host = ""  ', 'host = "smtp.provider.test"  ', 1))
    cli.ok("dkim", "keygen", "example.com", "--selector", "s1", "--algorithm", "ed25519")
    table = cli.ok("dns", "records", "example.com").stdout
    assert "mail leaves by: relay" in table and "s1._domainkey.example.com" in table and "Zone-file fragment:" in table
    zone = cli.ok("dns", "records", "example.com", "--zone").stdout
    assert zone.startswith("; smtpgate: records for example.com") and "Zone-file" not in zone
    data = cli.ok("dns", "records", "example.com", "--json").json()
    assert {r["purpose"] for r in data["records"]} == {"spf", "dkim", "dmarc", "tls-rpt", "srv", "autoconfig"}
    bad = cli("dns", "records", "not a domain")
    assert bad.code == 2 and "not a domain name" in bad.stderr
