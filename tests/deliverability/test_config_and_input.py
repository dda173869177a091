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
