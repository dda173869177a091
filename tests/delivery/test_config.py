"""[delivery] in the config: defaults that work, clear errors for what cannot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smtpgate.config import ConfigError, load_config
from tests.cli.conftest import Cli
from tests.delivery.harness import set_delivery


def write(tmp_path: Path, delivery: str) -> Path:
    path = tmp_path / "smtpgate.toml"
    path.write_text(delivery)
    return path


def test_defaults_capture_only_and_no_queue_needed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.delivery.mode == "capture" and not config.delivery.uses_queue
    assert config.delivery.max_queue_lifetime.days == 5


def test_routes_per_domain_are_normalised(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[delivery]\nmode = "mx"\n[delivery.routes]\n"Example.COM." = "capture"\n'))
    assert config.delivery.routes == {"example.com": "capture"} and config.delivery.uses_queue


@pytest.mark.parametrize("text, expected", [
    ('[delivery]\nmode = "relay"\n', "[delivery.relay] host is empty"),
    ('[delivery]\nmode = "smtp"\n', "delivery.mode"),
    ('[delivery.routes]\n"example.com" = "pigeon"\n', "delivery.routes.example.com"),
    ('[delivery]\ndns_servers = ["dns.example.com"]\n', "expected an IP address"),
    ('[delivery]\ndns_servers = ["127.0.0.1:99999"]\n', "port must be a number"),
    ('[delivery]\nmax_queue_lifetime = "five days"\n', "not a duration"),
    ('[delivery.relay]\npassword = "in-clear"\n', "unknown key `delivery.relay.password`"),
    ('[delivery.dkim]\n"example.com" = { selector = "s1" }\n', "key_file"),
])
def test_bad_delivery_config_is_named(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert expected in str(exc.value)


def test_serve_refuses_a_missing_dkim_key_before_listening(cli: Cli) -> None:
    set_delivery(cli.config, '[delivery]\nmode = "capture"\n[delivery.routes]\n"example.com" = "mx"\n'
                             '[delivery.dkim]\n"example.com" = { selector = "s1", key_file = "dkim/nope.key" }\n')
    proc = subprocess.run([sys.executable, "-m", "smtpgate", "serve", "--config", str(cli.config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "dkim keygen example.com" in proc.stderr and "Traceback" not in proc.stderr
