"""The CLI flows a new user tries, through the real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat

from tests.cli.conftest import Cli

PASSWORD = "tulip-anvil-orbit-quartz-59"


def test_init_writes_config_key_and_tls(tmp_path) -> None:
    data = tmp_path / "d"
    result = Cli(None).ok("init", "--data-dir", str(data), "--hostname", "mail.example.test", "--submission-port", "3587")
    assert "ca.pem" in result.stdout
    key = data / "secrets" / "app-password.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "tls" / "server.key").stat().st_mode) == 0o600
    config = (data / "smtpgate.toml").read_text()
    assert 'hostname = "mail.example.test"' in config and "127.0.0.1:3587" in config
    assert key.read_text().strip() not in config
    again = Cli(None)("init", "--data-dir", str(data))
    assert again.code == 1 and "already exists" in again.stderr


def test_bad_config_names_file_key_found_and_expected(tmp_path) -> None:
    data = tmp_path / "d"
    Cli(None).ok("init", "--data-dir", str(data))
    config = data / "smtpgate.toml"
    config.write_text(config.read_text().replace("max_recipients = 100", 'max_recipients = "lots"'))
    result = Cli(config)("account", "list")
    assert result.code == 2
    assert str(config.resolve()) in result.stderr
    assert "smtp.max_recipients" in result.stderr and "'lots'" in result.stderr and "integer" in result.stderr
    missing = Cli(tmp_path / "nope.toml")("account", "list")
    assert missing.code == 2 and "smtpgate init" in missing.stderr


def test_secret_file_readable_by_others_is_refused(tmp_path) -> None:
    data = tmp_path / "d"
    Cli(None).ok("init", "--data-dir", str(data))
    os.chmod(data / "secrets" / "app-password.key", 0o644)
    result = Cli(data / "smtpgate.toml")("account", "add", "a@example.com", "--no-password")
    assert result.code == 2 and "chmod 600" in result.stderr


def test_account_lifecycle(cli_any_db: Cli) -> None:
    cli = cli_any_db
    added = cli.ok("account", "add", "Alice@Example.com", "--password-stdin", "--name", "Alice", "--json", input=PASSWORD + "\n")
    assert added.json()["login"] == "alice@example.com"
    assert PASSWORD not in added.stdout
    generated = cli.ok("account", "add", "bob@example.com", "--generate", "--json").json()
    assert len(generated["password"]) >= 20
    logins = [a["login"] for a in cli.ok("account", "list", "--json").json()]
    assert logins == ["alice@example.com", "bob@example.com"]
    cli.ok("account", "disable", "alice@example.com")
    assert cli.ok("account", "show", "alice@example.com", "--json").json()["enabled"] is False
    cli.ok("account", "enable", "alice@example.com")
    cli.ok("account", "set", "alice@example.com", "--require-app-passwords")
    shown = cli.ok("account", "show", "alice@example.com")
    assert "refused for SMTP" in shown.stdout
    cli.ok("account", "set-password", "alice@example.com", "--password-stdin", input="another-fine-horse-staple-7\n")


def test_password_is_never_an_argument_and_weak_ones_get_advice(cli: Cli) -> None:
    no_source = cli("account", "add", "a@example.com")
    assert no_source.code == 1 and "--password-stdin" in no_source.stderr and "shell history" in no_source.stderr
    weak = cli("account", "add", "a@example.com", "--password-stdin", input="password1\n")
    assert weak.code == 1
    assert "at least 12" in weak.stderr and "common" in weak.stderr and "--generate" in weak.stderr
    assert cli("account", "add", "a@example.com", "--password", "x").code == 2  # no such option
    assert cli.ok("account", "list", "--json").json() == []


def test_app_password_create_show_revoke(cli_any_db: Cli) -> None:
    cli = cli_any_db
    cli.ok("account", "add", "app@example.com", "--no-password")
    created = cli.ok(
        "app-password", "create", "app@example.com", "--name", "billing", "--allow-from", "@example.com",
        "--allow-from", "billing@example.org", "--allow-foreign-sender", "--allow-ip", "192.0.2.0/24", "--expires", "90d",
        "--max-per-hour", "100", "--max-per-day", "1000", "--json",
    ).json()
    assert created["secret"].startswith("sgp_") and created["id"].startswith("ap_")
    assert created["scopes"]["allowed_senders"] == ["@example.com", "billing@example.org"]
    assert created["scopes"]["allowed_networks"] == ["192.0.2.0/24"]
    assert created["state"] == "active" and created["expires_at"]
    shown = cli.ok("creds", "show", created["id"])
    assert "billing" in shown.stdout and created["secret"] not in shown.stdout
    listing = cli.ok("creds", "list", "--account", "app@example.com", "--json").json()
    assert [c["id"] for c in listing] == [created["id"]]
    assert all("secret" not in c for c in listing)
    cli.ok("creds", "revoke", created["id"])
    assert cli.ok("creds", "list", "--state", "revoked", "--json").json()[0]["id"] == created["id"]
    assert cli.ok("creds", "list", "--state", "active", "--json").json() == []
    missing = cli("creds", "revoke", "ap_000000000000")
    assert missing.code == 1 and "creds list" in missing.stderr


def test_app_password_bad_input_is_explained(cli: Cli) -> None:
    cli.ok("account", "add", "a@example.com", "--no-password")
    bad_ip = cli("app-password", "create", "a@example.com", "--name", "x", "--allow-ip", "10.0.0.999/8")
    assert bad_ip.code == 2 and "CIDR" in bad_ip.stderr
    bad_expiry = cli("app-password", "create", "a@example.com", "--name", "x", "--expires", "soon")
    assert bad_expiry.code == 2 and "90d" in bad_expiry.stderr
    no_account = cli("app-password", "create", "z@example.com", "--name", "x")
    assert no_account.code == 1 and "account list" in no_account.stderr


def test_rotate_and_due(cli: Cli) -> None:
    cli.ok("account", "add", "a@example.com", "--no-password")
    first = cli.ok("app-password", "create", "a@example.com", "--name", "crm", "--expires", "7d", "--json").json()
    due = cli.ok("creds", "due", "--json").json()
    assert [c["id"] for c in due] == [first["id"]]
    rotated = cli.ok("creds", "rotate", first["id"], "--overlap", "2h", "--json").json()
    assert rotated["secret"] != first["secret"] and rotated["rotated_from"] == first["id"]
    old = cli.ok("creds", "show", first["id"], "--json").json()
    assert old["replaced_by"] == rotated["id"]
    human = cli.ok("creds", "rotate", rotated["id"])
    assert "shown once" in human.stdout and "stops at" in human.stdout


def test_json_output_is_only_json(cli: Cli) -> None:
    import json

    cli.ok("account", "add", "a@example.com", "--no-password")
    for args in (("account", "list", "--json"), ("creds", "list", "--json"), ("creds", "due", "--json")):
        json.loads(cli.ok(*args).stdout)


def test_root_config_option(cli: Cli) -> None:
    result = Cli(None)("--config", str(cli.config), "account", "add", "a@example.com", "--no-password")
    assert result.code == 0, result.stderr
