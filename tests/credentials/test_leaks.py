"""Finding our secrets in text, files and git history: only real ones (prefix and checksum)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from smtpgate.credentials import CredentialService, api_tokens, app_passwords, service_accounts
from smtpgate.credentials.leaks import find_in_text, scan_git, scan_paths


def mangled(secret: str) -> str:
    """The same shape with one character changed: the checksum no longer holds."""
    last = "a" if secret[-1] != "a" else "b"
    return secret[:-1] + last


def test_only_secrets_with_a_valid_checksum_are_found() -> None:
    real = app_passwords.generate()
    client = service_accounts.generate_client_secret()
    text = f"SMTP_PASSWORD={real}\nbad={mangled(real)}\nclient_secret: '{client}'\nnot: x{real}\n{real}z\n"
    found = [(line, secret) for line, secret, _ in find_in_text(text)]
    assert found == [(1, real), (3, client)]  # glued to other characters is not a token of ours either


def test_files_and_folders(tmp_path: Path) -> None:
    real = app_passwords.generate()
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "settings.py").write_text(f"# mail\nPASSWORD = '{real}'\n")
    (tmp_path / "app" / "blob.bin").write_bytes(b"\x00\xff" + real.encode() + b"\x00")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text(real)
    findings = list(scan_paths([tmp_path]))
    assert sorted(f.location for f in findings) == sorted([f"{tmp_path}/app/blob.bin:1", f"{tmp_path}/app/settings.py:2"])
    assert all(f.shown == real[:8] + "…" and real not in repr(f) for f in findings)


def test_git_history_keeps_a_secret_deleted_since(tmp_path: Path) -> None:
    real = app_passwords.generate()
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=a@example.com", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "config.env").write_text(f"HOST=x\nSMTP_PASSWORD={real}\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "oops"], check=True)
    (repo / "config.env").write_text("HOST=x\n")
    subprocess.run([*git, "commit", "-qam", "remove the secret"], check=True)
    assert list(scan_paths([repo])) == []  # the work tree is clean
    (finding,) = list(scan_git(repo))
    assert finding.location.endswith(":config.env:2") and finding.secret == real


def test_states_known_to_the_server(service: CredentialService) -> None:
    service.create_account("alice@example.com")
    live = service.create_app_password("alice@example.com", "a")
    gone = service.create_app_password("alice@example.com", "b")
    service.revoke(gone.credential.id)
    assert service.secret_status(live.secret) == ("live", live.credential.id)
    assert service.secret_status(gone.secret) == ("revoked", gone.credential.id)
    assert service.secret_status(app_passwords.generate()) == ("unknown", None)


def test_operator_api_tokens_are_found_and_their_state_known(service: CredentialService) -> None:
    issued = service.api_tokens.create("terraform", "operator")
    text = f"TF_VAR_smtpgate_token={issued.secret}\nbad={mangled(issued.secret)}\n"
    assert [(line, kind.name) for line, _, kind in find_in_text(text)] == [(1, "api-token")]
    assert service.api_tokens.secret_status(issued.secret) == ("live", issued.info.id)
    service.api_tokens.revoke(issued.info.id)
    assert service.api_tokens.secret_status(issued.secret) == ("revoked", issued.info.id)
    assert service.api_tokens.secret_status(api_tokens.generate()) == ("unknown", None)
    assert service.api_tokens.secret_status(mangled(issued.secret)) == ("unknown", None)
