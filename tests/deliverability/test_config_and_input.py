"""Bad settings and bad input name the problem and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpgate.config import ConfigError, load_config
from tests.cli.conftest import Cli


@pytest.mark.parametrize("section, line, words", [
    ("deliverability", 'outbound_addresses = ["mail.example.com"]', "is not an IP address"),
    ("deliverability", 'relay_spf = "provider.net"', "expected one SPF term"),
    ("deliverability", 'misaligned = "bounce"', "misaligned"),
    ("reputation", 'dnsbl = ["bad zone/x"]', "expected a domain name"),
    ("reputation", "rise_factor = 1", "rise_factor"),
])
def test_bad_settings_are_named(tmp_path: Path, section: str, line: str, words: str) -> None:
    path = tmp_path / "smtpgate.toml"
    path.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError, match=words):
        load_config(path)


def test_bad_domains_and_options_exit_2(cli: Cli) -> None:
    doctor = cli("doctor", "--domain", "not a domain")
    assert doctor.code == 2 and "not a domain name" in doctor.stderr and "Traceback" not in doctor.stderr
    rotate = cli("dkim", "rotate", "example.com", "--algorithm", "dsa")
    assert rotate.code == 2 and "unknown algorithm" in rotate.stderr
    assert cli("dkim", "rotate", "example", "--algorithm", "ed25519").code == 2
    # no command makes records or keys for a bad name
    records = cli("dns", "records", 'x.com"')
    assert records.code == 2 and "not a domain name" in records.stderr and "IN TXT" not in records.stdout
    rotate = cli("dkim", "rotate", "a..b", "--algorithm", "ed25519")
    assert rotate.code == 2 and "not a domain name" in rotate.stderr
    assert cli("dkim", "show", "--json").json() == []
    assert cli("dkim", "show", "a..b").code == 2
    doctor = cli("doctor", "--domain", "ex_ample.com")
    assert doctor.code == 2 and "not a domain name" in doctor.stderr
    silent = cli("doctor", "--domain", "example.com", "--dns-server", "127.0.0.1:9", "--timeout", "0.2")
    assert silent.code == 3 and "nothing could be checked" in silent.stdout


@pytest.mark.parametrize("text", ["a..b", 'x.com"', "x.com;rm", "ex_ample.com", "*.example.com", "-a.example.com",
                                  "a" * 64 + ".com", ".".join(["a" * 63] * 4) + ".com", "localhost", "1.2.3.4", ""])
def test_what_is_not_a_domain_name_is_refused(text: str) -> None:
    from smtpgate.deliverability.records import domain_name

    with pytest.raises(ValueError, match="is not a domain name"):
        domain_name(text)


def test_domain_names_are_normalised() -> None:
    from smtpgate.deliverability.records import domain_name

    assert domain_name(" Example.COM. ") == "example.com"
    assert domain_name("bücher.example") == "xn--bcher-kva.example"   # what DNS holds
    assert domain_name("mail-1.sub.example.co.uk") == "mail-1.sub.example.co.uk"

