"""Delivery targets for rotated secrets: parsing, atomic 0600 writes, dotenv lines, the keyring."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from smtpgate.credentials import CredentialService, CredentialState, Principal
from smtpgate.credentials.errors import InvalidOperation
from smtpgate.credentials.secret_targets import parse_hook, parse_target, replace_env_line, run_hook


def test_targets_parse_and_print_back(tmp_path: Path) -> None:
    assert str(parse_target(f"file:{tmp_path}/s")) == f"file:{tmp_path}/s"
    env = parse_target(f"env:{tmp_path}/app.env:SMTP_PASSWORD")
    assert (env.kind, env.path, env.name) == ("env", f"{tmp_path}/app.env", "SMTP_PASSWORD")
    assert parse_target("keyring:billing:smtp").user == "smtp"
    for bad in ["nowhere", "file:", "env:/x", "env:/x:1BAD", "keyring:only", "s3:bucket"]:
        with pytest.raises(InvalidOperation):
            parse_target(bad)


def test_file_target_is_written_whole_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old\n")
    path.chmod(0o644)
    parse_target(f"file:{path}").write("sgp_new")
    assert path.read_text() == "sgp_new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary file left behind


def test_env_target_replaces_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("# app settings\nSMTP_HOST=mail.example.com\nexport SMTP_PASSWORD=old\nOTHER=x=y\n")
    target = parse_target(f"env:{path}:SMTP_PASSWORD")
    target.write("sgp_new")
    assert path.read_text() == "# app settings\nSMTP_HOST=mail.example.com\nexport SMTP_PASSWORD=sgp_new\nOTHER=x=y\n"
    assert target.read() == "sgp_new"
    assert replace_env_line("A=1\n", "B", "2") == "A=1\nB=2\n"


def test_keyring_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    keyring.set_keyring(backend)
    target = parse_target("keyring:billing-app:smtp")
    target.write("sgp_from_rotation")
    assert backend.get_password("billing-app", "smtp") == "sgp_from_rotation"


def test_a_target_in_a_missing_folder_is_refused_before_anything_rotates(service: CredentialService, tmp_path: Path) -> None:
    service.create_account("alice@example.com")
    issued = service.create_app_password("alice@example.com", "billing")
    with pytest.raises(InvalidOperation):
        service.rotate(issued.credential.id, target=parse_target(f"file:{tmp_path}/missing/secret"))
    assert service.get_credential(issued.credential.id).replaced_by is None


def test_a_failing_write_rotates_nothing(service: CredentialService, tmp_path: Path) -> None:
    service.create_account("alice@example.com")
    issued = service.create_app_password("alice@example.com", "billing")
    folder = tmp_path / "ro"
    folder.mkdir()
    target = parse_target(f"file:{folder}/secret")
    os.chmod(folder, 0o500)
    try:
        if os.access(folder, os.W_OK):  # root writes anywhere: make the write itself fail instead
            (folder / "secret").mkdir()
        with pytest.raises((InvalidOperation, OSError)):
            service.rotate(issued.credential.id, target=target)
    finally:
        os.chmod(folder, 0o700)
    assert service.get_credential(issued.credential.id).replaced_by is None
    assert len(service.list_credentials()) == 1


def test_the_predecessor_retires_at_the_successors_first_use(service: CredentialService, tmp_path: Path) -> None:
    service.create_account("alice@example.com")
    first = service.create_app_password("alice@example.com", "billing")
    target = parse_target(f"file:{tmp_path}/secret")
    second = service.rotate(first.credential.id, target=target, hook=("true",))
    assert target.read() == second.secret
    assert second.credential.delivery_target == str(target) and second.credential.delivery_hook == ("true",)
    ok = service.authenticate("alice@example.com", first.secret, "192.0.2.1", True)
    assert isinstance(ok, Principal)  # still valid: the successor has not been used yet
    assert isinstance(service.authenticate("alice@example.com", second.secret, "192.0.2.1", True), Principal)
    assert service.get_credential(first.credential.id).state is CredentialState.EXPIRED
    assert not isinstance(service.authenticate("alice@example.com", first.secret, "192.0.2.1", True), Principal)
    third = service.rotate(second.credential.id)  # the target and hook are remembered
    assert target.read() == third.secret and third.credential.delivery_hook == ("true",)


def test_rotation_without_a_target_keeps_the_overlap(service: CredentialService) -> None:
    service.create_account("alice@example.com")
    first = service.create_app_password("alice@example.com", "billing")
    second = service.rotate(first.credential.id)
    assert isinstance(service.authenticate("alice@example.com", second.secret, "192.0.2.1", True), Principal)
    assert isinstance(service.authenticate("alice@example.com", first.secret, "192.0.2.1", True), Principal)


def test_hooks_run_without_a_shell() -> None:
    assert parse_hook("systemctl reload 'my app'") == ("systemctl", "reload", "my app")
    assert run_hook(parse_hook("sh -c 'exit 3'")).returncode == 3
    assert run_hook(("definitely-not-a-command-xyz",)).returncode == 127
    with pytest.raises(InvalidOperation):
        parse_hook("   ")
