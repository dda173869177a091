"""[legacy] in smtpgate.toml: off by default, and never on without the networks it serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpgate.config import ConfigError, load_config
from smtpgate.smtp.server import LegacyNetworks, listeners_from
from smtpgate.smtp.tls import legacy_server_context, server_context


def config_with(tmp_path: Path, legacy: str) -> Path:
    path = tmp_path / "smtpgate.toml"
    path.write_text(f"[legacy]\n{legacy}\n")
    return path


def test_off_by_default_and_on_with_networks(tmp_path: Path) -> None:
    assert [item.name for item in listeners_from(load_config(config_with(tmp_path, "")))] == ["submission", "submissions"]
    on = load_config(config_with(tmp_path, 'listen = "0.0.0.0:2525"\nnetworks = ["192.0.2.0/24", "2001:db8::/64"]'))
    legacy = listeners_from(on)[-1]
    assert (legacy.name, legacy.host, legacy.port, legacy.implicit_tls) == ("legacy", "0.0.0.0", 2525, False)
    networks = LegacyNetworks(on.legacy.networks)
    assert networks.allows("192.0.2.40") and networks.allows("::ffff:192.0.2.40") and networks.allows("2001:db8::5")
    assert not networks.allows("198.51.100.1") and not networks.allows("unknown")


@pytest.mark.parametrize("legacy, expected", [
    ('listen = "0.0.0.0:2525"', "networks is empty"),
    ('listen = "2525"', "expected HOST:PORT"),
    ('listen = "0.0.0.0:2525"\nnetworks = ["printers"]', "is not a network"),
])
def test_a_bad_legacy_section_says_what_to_write(tmp_path: Path, legacy: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(config_with(tmp_path, legacy))


def test_the_legacy_context_takes_tls10_and_the_strict_one_does_not(tmp_path: Path) -> None:
    import ssl

    from smtpgate.pki import make_local_ca_and_server_cert

    files = make_local_ca_and_server_cert(tmp_path / "tls", ["localhost"])
    assert legacy_server_context(files.cert, files.key).minimum_version is ssl.TLSVersion.TLSv1
    strict = server_context(files.cert, files.key)
    assert strict.minimum_version is ssl.TLSVersion.TLSv1_2
    assert all("GCM" in c["name"] or "CHACHA20" in c["name"] for c in strict.get_ciphers())
