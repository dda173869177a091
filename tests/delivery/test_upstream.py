"""The upstream (smarthost) password: encrypted at rest, never shown, rotatable from the CLI."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from smtpgate.delivery.upstream import KEY_ENV, UpstreamCredentialError, UpstreamPassword, UpstreamSecretStore
from tests.cli.conftest import Cli

SECRET = "Upstream-Pa55word-Never-Shown"


def store(tmp_path: Path, environ: dict[str, str] | None = None) -> UpstreamSecretStore:
    return UpstreamSecretStore(tmp_path / "secrets" / "upstream-password.enc", tmp_path / "secrets" / "upstream.key", environ or {})


def test_round_trip_and_nothing_in_clear(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.set_password(SECRET)
    assert s.password().reveal() == SECRET
    for path in (s.password_path, s.key_path):
        assert (path.stat().st_mode & 0o777) == 0o600
        assert SECRET.encode() not in path.read_bytes()
    first = s.password_path.read_bytes()
    s.set_password(SECRET)
    assert s.password_path.read_bytes() != first  # a fresh nonce each time


def test_password_object_never_prints() -> None:
    value = UpstreamPassword(SECRET)
    assert SECRET not in repr(value) and SECRET not in str(value) and SECRET not in f"{value}"
    assert SECRET not in repr([value]) and SECRET not in repr({"password": value})


def test_wrong_key_or_tampering_fails_with_a_clear_message(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.set_password(SECRET)
    other = store(tmp_path, {KEY_ENV: base64.b64encode(os.urandom(32)).decode()})
    with pytest.raises(UpstreamCredentialError, match="does not decrypt") as exc:
        other.password()
    assert SECRET not in str(exc.value)
    blob = bytearray(s.password_path.read_bytes())
    blob[-5] ^= 1
    s.password_path.write_bytes(bytes(blob))
    with pytest.raises(UpstreamCredentialError):
        s.password()


def test_key_from_the_environment_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    s = store(tmp_path, {KEY_ENV: key})
    s.set_password(SECRET)
    assert not s.key_path.exists()
    assert store(tmp_path, {KEY_ENV: key}).password().reveal() == SECRET
    assert s.key_source() == f"${KEY_ENV}"
    with pytest.raises(UpstreamCredentialError, match="32 bytes"):
        store(tmp_path, {KEY_ENV: "too-short"}).password()


def test_readable_files_are_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.set_password(SECRET)
    s.key_path.chmod(0o644)
    with pytest.raises(UpstreamCredentialError, match="chmod 600"):
        s.password()
    s.key_path.chmod(0o600)
    s.password_path.chmod(0o640)
    with pytest.raises(UpstreamCredentialError, match="chmod 600"):
        s.password()


def test_missing_password_says_how_to_set_it(tmp_path: Path) -> None:
    with pytest.raises(UpstreamCredentialError, match="no upstream password is set") as exc:
        store(tmp_path).password()
    assert exc.value.code == "upstream-password-missing"



def test_cli_set_password_from_stdin_then_show_never_prints_it(cli: Cli) -> None:
    result = cli.ok("upstream", "set-password", "--stdin", input=SECRET + "\n")
    assert SECRET not in result.stdout + result.stderr
    data = cli.config.parent
    assert SECRET not in (data / "smtpgate.toml").read_text()
    assert SECRET.encode() not in (data / "secrets" / "upstream-password.enc").read_bytes()
    shown = cli.ok("upstream", "show", "--json").json()
    assert shown["password_set"] is True and shown["problem"] == "" and SECRET not in str(shown)
    rotated = cli.ok("upstream", "set-password", "--stdin", input="Second-" + SECRET + "\n")
    assert "Second-" not in rotated.stdout
    config = data / "smtpgate.toml"
    from smtpgate.config import load_config
    from smtpgate.delivery.routes import upstream_secrets

    assert upstream_secrets(load_config(config)).password().reveal() == "Second-" + SECRET


def test_cli_set_password_refuses_an_empty_or_missing_password(cli: Cli) -> None:
    empty = cli("upstream", "set-password", "--stdin", input="\n")
    assert empty.code == 1 and "no password on standard input" in empty.stderr
    missing = cli("upstream", "set-password")
    assert missing.code == 2 and "--stdin" in missing.stderr
