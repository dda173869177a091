"""`smtpgate scan` through the real entry point: what it prints, what it never prints, its exit code."""

from __future__ import annotations

from pathlib import Path

from smtpgate.credentials import app_passwords
from tests.cli.conftest import Cli


def test_scan_reports_live_revoked_and_unknown_with_a_short_prefix(cli: Cli, tmp_path: Path) -> None:
    cli.ok("account", "add", "alice@example.com", "--no-password")
    live = cli.ok("app-password", "create", "alice@example.com", "--name", "a", "--json").json()
    gone = cli.ok("app-password", "create", "alice@example.com", "--name", "b", "--json").json()
    cli.ok("creds", "revoke", gone["id"])
    stranger = app_passwords.generate()
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "a.env").write_text(f"P1={live['secret']}\nP2={gone['secret']}\nP3={stranger}\n")
    result = cli("scan", str(folder), "--json")
    assert result.code == 1
    rows = {r["location"].rsplit(":", 1)[1]: r for r in result.json()["findings"]}
    assert (rows["1"]["state"], rows["1"]["credential_id"]) == ("live", live["id"])
    assert rows["2"]["state"] == "revoked" and rows["3"]["state"] == "unknown"
    text = cli("scan", str(folder))
    for secret in (live["secret"], gone["secret"], stranger):
        assert secret not in text.stdout + text.stderr + result.stdout
    assert "3 secret(s) found, 1 live" in text.stdout


def test_nothing_found_exits_zero_and_a_non_repository_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_text("nothing here sgp_short\n")
    assert cli("scan", str(tmp_path)).code == 0
    bad = cli("scan", str(tmp_path), "--git")
    assert bad.code == 2 and "git repository" in bad.stderr
