"""DKIM keys and signing: both algorithms verify with dkimpy; keys are guarded like secrets."""

from __future__ import annotations

from pathlib import Path

import dkim
import pytest

from smtpgate.delivery.dkim import DkimError, DkimSigner, from_domain, generate_key, load_key, txt_record
from tests.cli.conftest import Cli

MESSAGE = (
    b"Received: from client ([192.0.2.1]) by gw (smtpgate) with ESMTPSA id X;\r\n\tSat, 28 Nov 2026 12:00:00 +0000\r\n"
    b"From: \"Alice\" <alice@News.Example.com>\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
)


def published(*keys) -> callable:
    records = {name: value for name, value in (txt_record(k) for k in keys)}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value else None

    return dnsfunc


@pytest.mark.parametrize("algorithm, tag", [("ed25519", b"a=ed25519-sha256"), ("rsa", b"a=rsa-sha256")])
def test_signature_verifies_and_breaks_on_tampering(algorithm: str, tag: bytes) -> None:
    key = generate_key("example.com", "s1", algorithm)
    signed = DkimSigner({"example.com": key}).sign(MESSAGE, "alice@example.com")
    assert signed.startswith(b"DKIM-Signature:") and tag in signed and b"d=example.com" in signed
    assert dkim.verify(signed, dnsfunc=published(key))
    assert not dkim.verify(signed.replace(b"Subject: hi", b"Subject: hi!"), dnsfunc=published(key))


def test_signing_domain_is_the_from_domain_or_its_parent() -> None:
    parent = generate_key("example.com", "s1")
    exact = generate_key("news.example.com", "s2", "ed25519")
    assert from_domain(MESSAGE) == "news.example.com"
    assert DkimSigner({"example.com": parent, "news.example.com": exact}).key_for(MESSAGE) is exact
    assert DkimSigner({"example.com": parent}).key_for(MESSAGE) is parent
    assert DkimSigner({"other.example": parent}).sign(MESSAGE, "x@elsewhere.example") == MESSAGE


def test_key_files_round_trip_and_are_refused_when_readable_by_others(tmp_path: Path) -> None:
    for algorithm in ("ed25519", "rsa"):
        key = generate_key("example.com", "s1", algorithm)
        path = tmp_path / f"{algorithm}.key"
        path.write_bytes(key.private)
        path.chmod(0o600)
        loaded = load_key("example.com", "s1", path)
        assert loaded.algorithm == algorithm and txt_record(loaded) == txt_record(key)
        path.chmod(0o644)
        with pytest.raises(DkimError, match="chmod 600"):
            load_key("example.com", "s1", path)
    with pytest.raises(DkimError, match="dkim keygen example.com"):
        load_key("example.com", "s1", tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    junk.chmod(0o600)
    with pytest.raises(DkimError, match="expected a PEM RSA key"):
        load_key("example.com", "s1", junk)
    assert "PRIVATE" not in repr(generate_key("example.com", "s1", "rsa"))


def test_txt_record_form() -> None:
    name, value = txt_record(generate_key("example.com", "sel", "ed25519"))
    assert name == "sel._domainkey.example.com"
    assert value.startswith("v=DKIM1; k=ed25519; p=") and len(value) < 100


def test_cli_keygen_writes_a_private_key_and_prints_the_record(cli: Cli) -> None:
    result = cli.ok("dkim", "keygen", "Example.COM", "--selector", "mail2026")
    key_path = cli.config.parent / "dkim" / "example.com.mail2026.key"
    assert key_path.exists() and (key_path.stat().st_mode & 0o777) == 0o600
    assert "mail2026._domainkey.example.com. IN TXT" in result.stdout and "k=rsa; p=" in result.stdout
    assert "No config edit, no restart" in result.stdout
    assert key_path.read_text() not in result.stdout + result.stderr
    again = cli("dkim", "keygen", "example.com", "--selector", "mail2026")
    assert again.code == 1 and "exists already" in again.stderr
    bad = cli("dkim", "keygen", "example.com", "--algorithm", "dsa")
    assert bad.code == 2 and "rsa" in bad.stderr


def test_cli_show_prints_configured_records(cli: Cli) -> None:
    made = cli.ok("dkim", "keygen", "example.com", "--selector", "s1", "--algorithm", "ed25519", "--json").json()
    cli.config.write_text(cli.config.read_text().replace("[delivery.dkim]\n", f"[delivery.dkim]\n{made['config']}\n"))
    assert made["state"] == "pending"
    shown = cli.ok("dkim", "show", "--json").json()
    assert shown == [{"domain": "example.com", "selector": "s1", "algorithm": "ed25519", "state": "pending",
                      "dns_name": made["dns_name"], "dns_txt": made["dns_txt"]}]
