"""`smtpgate doctor`, `send` and `profile` through the real entry point: secret sources, exits, output."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.doctor.fakes import FakeSmtp
from tests.smtp.server_harness import RunningServer

SECRET = "cli-secret-value-31337"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(None)


@pytest.fixture
def profiles_env(tmp_path: Path) -> dict[str, str]:
    """Profiles in the test's own folder; no keyring unless a test picks one."""
    return {"SMTPGATE_PROFILES": str(tmp_path / "cfg" / "profiles.toml"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}


def secret_file(tmp_path: Path, value: str, mode: int = 0o600) -> Path:
    path = tmp_path / "pw"
    path.write_text(value + "\n")
    os.chmod(path, mode)
    return path


# ------------------------------------------------------------------ doctor


def test_doctor_refuses_a_password_argument(cli: Cli) -> None:
    result = cli("doctor", "127.0.0.1", "--user", "a@example.test", "--password", SECRET)
    assert result.code == 2 and "never command-line arguments" in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "no server to check"),
        (("127.0.0.1", "--port", "587:ssl"), "starttls, tls or auto"),
        (("127.0.0.1", "--send-to", "bob"), "is not an address"),
        (("127.0.0.1", "--user", "a@example.test"), "no password given for a@example.test"),
        (("127.0.0.1", "--user", "a@example.test", "--password-env", "SMTPGATE_TEST_UNSET"), "is not set"),
        (("127.0.0.1", "--password-stdin", "--password-env", "X"), "exclude each other"),
        (("127.0.0.1", "--timeout", "0"), "more than 0"),
    ],
)
def test_doctor_usage_errors(cli: Cli, args: tuple[str, ...], words: str) -> None:
    result = cli("doctor", *args)
    assert result.code == 2, result.stderr
    assert words in result.stderr


def test_doctor_refuses_a_password_file_others_can_read(cli: Cli, tmp_path: Path) -> None:
    path = secret_file(tmp_path, SECRET, 0o644)
    result = cli("doctor", "127.0.0.1", "--user", "a@example.test", "--password-file", str(path))
    assert result.code == 1 and f"chmod 600 {path}" in result.stderr and SECRET not in result.stderr


def test_doctor_with_a_password_file_verbose_and_host_port(cli: Cli, tmp_path: Path, fake_cert) -> None:
    path = secret_file(tmp_path, SECRET)
    with FakeSmtp(cert=fake_cert) as fake:
        result = cli("doctor", f"127.0.0.1:{fake.port}", "--user", "a@example.test", "--password-file", str(path),
                     "--cafile", str(fake_cert[0]), "--verbose", "--timeout", "3")
    assert result.code == 0, result.stdout
    assert "Transcript (secrets redacted):" in result.stdout and "AUTH PLAIN <redacted>" in result.stdout
    assert f"  PASS  tcp {fake.port}" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_doctor_exit_status_and_json_on_failure(cli: Cli) -> None:
    with FakeSmtp(behaviour="drop") as fake:
        result = cli("doctor", "127.0.0.1", "--port", str(fake.port), "--json")
    assert result.code == 1
    report = result.json()
    assert report["ok"] is False and report["counts"]["fail"] == 1
    banner = next(c for c in report["checks"] if c["id"] == f"banner:{fake.port}")
    assert banner["status"] == "fail" and banner["cause"] and banner["fix"]


# ------------------------------------------------------------------ send


def test_send_with_attachment_lands_in_capture(cli: Cli, server: RunningServer, tmp_path: Path) -> None:
    secret = server.account_with_app_password("send1@example.com")
    attachment = tmp_path / "report.csv"
    attachment.write_text("a,b\n1,2\n")
    result = cli("send", "--server", f"127.0.0.1:{server.submission_port}", "--cafile", str(server.ca),
                 "--user", "send1@example.com", "--password-stdin", "--from", "send1@example.com",
                 "--to", "bob@example.org", "--subject", "monthly report", "--body", "See attached.",
                 "--attach", str(attachment), "--header", "X-Report: monthly", input=secret + "\n")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("Sent to bob@example.org: 250 2.0.0 Ok: queued as ")
    queued = result.stdout.split()[-1]
    raw = server.runtime.capture.open_raw(queued).read()
    assert b"Subject: monthly report" in raw and b"X-Report: monthly" in raw
    assert b'filename="report.csv"' in raw and b"See attached." in raw


def test_send_body_from_stdin_over_implicit_tls(cli: Cli, server: RunningServer) -> None:
    secret = server.account_with_app_password("send2@example.com")
    result = Cli(None)("send", "--server", f"127.0.0.1:{server.submissions_port}", "--tls", "tls",
                       "--cafile", str(server.ca), "--user", "send2@example.com", "--password-env", "PW",
                       "--to", "carol@example.org", "--subject", "piped", "--json",
                       input="line one\nline two\n", env={"PW": secret})
    assert result.code == 0, result.stderr
    sent = result.json()
    assert sent["sent"] is True and sent["recipients"] == ["carol@example.org"] and sent["reply"].startswith("250 ")
    raw = server.runtime.capture.open_raw(sent["reply"].split()[-1]).read()
    assert b"line one\r\nline two" in raw and b"From: send2@example.com" in raw


def test_send_wrong_password_is_explained_without_the_secret(cli: Cli, server: RunningServer) -> None:
    server.account_with_app_password("send3@example.com")
    result = cli("send", "--server", f"127.0.0.1:{server.submission_port}", "--cafile", str(server.ca),
                 "--user", "send3@example.com", "--password-env", "PW", "--to", "bob@example.org", "--body", "x",
                 env={"PW": SECRET})
    assert result.code == 1
    assert "authentication refused: 535 5.7.8" in result.stderr
    assert "cause: The server does not accept this login and password." in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--server", "h", "--to", "b@x.test", "--password", SECRET), "never command-line arguments"),
        (("--server", "h", "--user", "u@x.test", "--password-stdin", "--to", "b@x.test"), "cannot come from it too"),
        (("--to", "b@x.test", "--body", "x"), "no server"),
        (("--server", "h", "--body", "x"), "no recipient"),
        (("--server", "h:99999", "--to", "b@x.test", "--body", "x"), "is not HOST or HOST:PORT"),
        (("--server", "h", "--to", "b@x.test", "--body", "x"), "no sender address"),
        (("--server", "h", "--tls", "ssl", "--from", "a@x.test", "--to", "b@x.test", "--body", "x"), "expected auto"),
    ],
)
def test_send_usage_errors(cli: Cli, args: tuple[str, ...], words: str) -> None:
    result = cli("send", *args)
    assert result.code == 2, result.stderr
    assert words in result.stderr and SECRET not in result.stderr


# ------------------------------------------------------------------ profiles


def test_profile_in_a_0600_file_used_by_send_and_doctor(server: RunningServer, tmp_path: Path,
                                                         profiles_env: dict[str, str]) -> None:
    secret = server.account_with_app_password("prof1@example.com")
    cli = Cli(None)
    added = cli("profile", "add", "billing", "--server", f"127.0.0.1:{server.submission_port}",
                "--user", "prof1@example.com", "--cafile", str(server.ca), "--password-stdin", "--json",
                input=secret + "\n", env=profiles_env)
    assert added.code == 0, added.stderr
    assert added.json()["secret"] == "file"  # no keyring here (the fail backend)
    profiles = Path(profiles_env["SMTPGATE_PROFILES"])
    secret_path = profiles.parent / "secrets" / "billing"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret_path.parent.stat().st_mode) == 0o700
    assert secret not in profiles.read_text() and secret_path.read_text().strip() == secret

    listed = cli("profile", "list", "--json", env=profiles_env).json()
    assert listed == [{"name": "billing", "server": "127.0.0.1", "port": server.submission_port, "tls": "starttls",
                       "user": "prof1@example.com", "from": "", "cafile": str(server.ca.resolve()), "secret": "file"}]

    sent = cli("send", "--profile", "billing", "--to", "bob@example.org", "--subject", "via profile", "--body", "hi",
               env=profiles_env)
    assert sent.code == 0 and "queued as" in sent.stdout, sent.stderr
    checked = cli("doctor", "--profile", "billing", "--json", env=profiles_env)
    assert checked.code == 0, checked.stdout
    auth = next(c for c in checked.json()["checks"] if c["id"] == "auth")
    assert auth["status"] == "pass" and auth["data"]["port"] == server.submission_port

    again = cli("profile", "add", "billing", "--server", "h", env=profiles_env)
    assert again.code == 1 and "already exists" in again.stderr and "--replace" in again.stderr
    assert cli("profile", "remove", "billing", env=profiles_env).code == 0
    assert not secret_path.exists() and cli("profile", "list", "--json", env=profiles_env).json() == []
    gone = cli("send", "--profile", "billing", "--to", "b@example.org", "--body", "x", env=profiles_env)
    assert gone.code == 1 and "no profile named 'billing'" in gone.stderr


def test_profile_in_a_keyring(server: RunningServer, tmp_path: Path, profiles_env: dict[str, str]) -> None:
    """keyrings.alt's file backend stands in for the OS keyring (none runs here); the path is keyring's."""
    secret = server.account_with_app_password("prof2@example.com")
    env = {**profiles_env, "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(tmp_path / "data-home")}
    cli = Cli(None)
    added = cli("profile", "add", "ops", "--server", f"127.0.0.1:{server.submission_port}", "--user",
                "prof2@example.com", "--cafile", str(server.ca), "--store", "keyring", "--password-stdin",
                input=secret + "\n", env=env)
    assert added.code == 0, added.stderr
    assert "secret: in the OS keyring" in added.stdout
    assert not (Path(profiles_env["SMTPGATE_PROFILES"]).parent / "secrets" / "ops").exists()
    stored = "".join(p.read_text() for p in (tmp_path / "data-home").rglob("*.cfg"))
    assert "[smtpgate]" in stored and "ops =" in stored  # keyring service "smtpgate", one entry per profile
    sent = cli("send", "--profile", "ops", "--to", "bob@example.org", "--body", "from keyring", env=env)
    assert sent.code == 0, sent.stderr
    # auto prefers our own 0600 file over a keyring backend that is only a plain file
    auto = cli("profile", "add", "ops2", "--server", "h", "--user", "prof2@example.com", "--password-env", "PW",
               "--json", env={**env, "PW": secret})
    assert auto.json()["secret"] == "file"


def test_profile_keyring_unavailable(tmp_path: Path, profiles_env: dict[str, str]) -> None:
    result = Cli(None)("profile", "add", "x", "--server", "h", "--user", "u@example.test", "--store", "keyring",
                       "--password-env", "PW", env={**profiles_env, "PW": SECRET})
    assert result.code == 1 and "no usable OS keyring" in result.stderr and "--store file" in result.stderr
    assert json.loads(Cli(None)("profile", "list", "--json", env=profiles_env).stdout) == []


def test_profile_name_is_checked(profiles_env: dict[str, str]) -> None:
    result = Cli(None)("profile", "add", "../evil", "--server", "h", env=profiles_env)
    assert result.code == 2 and "not a usable profile name" in result.stderr
