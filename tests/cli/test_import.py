"""`smtpgate import`: a Dovecot passwd-file and a CSV file, through the real entry point, then SMTP."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from pathlib import Path

from tests.cli.conftest import Cli
from tests.conftest import need
from tests.smtp.server_harness import RunningServer

PASSWORD = "violet-harbour-engine-42"


def doveadm(scheme: str) -> str:
    need(shutil.which("doveadm") is not None, "doveadm (dovecot-core) is not installed")
    return subprocess.run(["doveadm", "pw", "-s", scheme, "-p", PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()


def passwd_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(
        f"alice@example.com:{doveadm('SHA512-CRYPT')}:1000:1000::/home/alice::\n"
        f"bob:{doveadm('BLF-CRYPT')}\n"
        f"carol@example.com:{doveadm('CRAM-MD5')}\n"
        "dave@example.com:{SSHA}AAAA\n"
    )
    return path


def test_dry_run_then_import_then_nothing_twice(cli: Cli, tmp_path: Path) -> None:
    path = passwd_file(tmp_path)
    dry = cli("import", "dovecot-passwd", str(path), "--domain", "example.com", "--dry-run")
    assert dry.code == 1, dry.stderr
    assert "line 1: would create alice@example.com (SHA512-CRYPT)" in dry.stdout
    assert "line 2: would create bob@example.com (BLF-CRYPT)" in dry.stdout
    assert "line 3: carol@example.com: skipped: CRAM-MD5" in dry.stdout
    assert "line 4: dave@example.com: skipped:" in dry.stdout
    assert "nothing was written" in dry.stdout
    assert cli.ok("account", "list", "--json").json() == []

    first = cli("import", "dovecot-passwd", str(path), "--domain", "example.com", "--json")
    assert first.code == 1
    report = first.json()
    assert [r["login"] for r in report["created"]] == ["alice@example.com", "bob@example.com"]
    assert [p["line"] for p in report["problems"]] == [3, 4]
    assert PASSWORD not in first.stdout and "$6$" not in first.stdout  # hashes are never printed

    again = cli("import", "dovecot-passwd", str(path), "--domain", "example.com", "--json").json()
    assert again["created"] == [] and [r["login"] for r in again["existing"]] == ["alice@example.com", "bob@example.com"]


def test_csv_import_and_a_clean_file_exits_zero(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(f"login,hash\nerin@example.com,{doveadm('SSHA512')}\n")
    result = cli("import", "csv", str(path))
    assert result.code == 0, result.stdout + result.stderr
    assert "1 created, 0 unchanged, 0 skipped" in result.stdout


def test_an_imported_account_sends_over_smtp_and_is_rehashed(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(f"frank@example.com:{doveadm('SHA512-CRYPT')}\n")
    cli = Cli(server.config_path)
    cli.ok("import", "dovecot-passwd", str(path))
    for _ in range(2):  # the first login verifies SHA512-CRYPT and rehashes, the second verifies argon2id
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
            smtp.starttls(context=server.client_context())
            smtp.login("frank@example.com", PASSWORD)
            smtp.sendmail("frank@example.com", ["x@example.org"], b"From: frank@example.com\r\nSubject: moved\r\n\r\nhi\r\n")
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as smtp:
        smtp.starttls(context=server.client_context())
        try:
            smtp.login("frank@example.com", PASSWORD + "x")
        except smtplib.SMTPAuthenticationError as exc:
            assert exc.smtp_code == 535
        else:
            raise AssertionError("a wrong password logged in")
