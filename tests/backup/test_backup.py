"""`smtpgate backup` / `restore`: what they refuse, what a damaged backup does, PostgreSQL, modes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from tests.conftest import PG_URL, need

PASSWORD = "granite-lantern-velvet-44"


def logins(cli: Cli) -> list[str]:
    return [a["login"] for a in cli.ok("account", "list", "--json").json()]


def with_account(cli: Cli, login: str = "alice@example.com") -> Cli:
    cli.ok("account", "add", login, "--password-stdin", input=PASSWORD + "\n")
    return cli


def test_backup_and_restore_on_sqlite_and_postgresql(cli_any_db: Cli, tmp_path: Path) -> None:
    cli = with_account(cli_any_db)
    made = cli.ok("backup", str(tmp_path / "bk"), "--json").json()
    manifest = json.loads((tmp_path / "bk" / "manifest.json").read_text())
    assert manifest["database"]["kind"] == made["database"]
    assert (tmp_path / "bk" / manifest["database"]["file"]).stat().st_size > 0
    if made["database"] == "postgresql":
        # The schema still has its tables: a restore would replace them, so it asks for --force.
        refused = Cli(None)("restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "r1"))
        assert refused.code == 1 and "already has tables" in refused.stderr and "--force" in refused.stderr
        cli.ok("account", "add", "later@example.com", "--password-stdin", input=PASSWORD + "\n")
        Cli(None).ok("restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "r1"), "--force")
    else:
        Cli(None).ok("restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "r1"))
    assert logins(Cli(tmp_path / "r1" / "smtpgate.toml")) == ["alice@example.com"]


def test_restore_refuses_a_non_empty_data_dir_and_force_keeps_the_old_one_aside(cli: Cli, tmp_path: Path) -> None:
    with_account(cli).ok("backup", str(tmp_path / "bk"))
    cli.ok("account", "add", "bob@example.com", "--password-stdin", input=PASSWORD + "\n")
    data = cli.config.parent
    refused = Cli(None)("restore", str(tmp_path / "bk"), "--data-dir", str(data))
    assert refused.code == 1
    assert f"{data} exists and is not empty" in refused.stderr and "--force" in refused.stderr
    assert logins(cli) == ["alice@example.com", "bob@example.com"]  # untouched

    done = Cli(None)("restore", str(tmp_path / "bk"), "--data-dir", str(data), "--force", "--json")
    assert done.code == 0, done.stderr
    replaced = Path(done.json()["replaced"])
    assert replaced.name.startswith("data.replaced-")
    assert logins(cli) == ["alice@example.com"]
    assert logins(Cli(replaced / "smtpgate.toml")) == ["alice@example.com", "bob@example.com"]


@pytest.mark.parametrize("damage", ["altered", "missing", "added", "no-manifest"])
def test_restore_refuses_a_damaged_backup_before_writing_anything(cli: Cli, tmp_path: Path, damage: str) -> None:
    backup = tmp_path / "bk"
    with_account(cli).ok("backup", str(backup))
    key = backup / "data" / "secrets" / "app-password.key"
    if damage == "altered":
        original = key.read_bytes()
        key.write_bytes(bytes([original[0] ^ 1]) + original[1:])  # one bit, same size
    elif damage == "missing":
        key.unlink()
    elif damage == "added":
        (backup / "data" / "extra.txt").write_text("x")
    else:
        (backup / "manifest.json").unlink()
    result = Cli(None)("restore", str(backup), "--data-dir", str(tmp_path / "new"))
    assert result.code == 1
    expected = {"altered": "app-password.key does not match its checksum", "missing": "app-password.key is missing",
                "added": "extra.txt is not listed in manifest.json", "no-manifest": "is not a backup"}[damage]
    assert expected in result.stderr
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.")]  # no staging left behind


def test_backup_refuses_a_used_destination_and_one_inside_the_data_dir(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    used = cli("backup", str(tmp_path / "used"))
    assert used.code == 1 and "exists and is not empty" in used.stderr
    inside = cli("backup", str(cli.config.parent / "bk"))
    assert inside.code == 1 and "is inside the data dir" in inside.stderr


def test_the_backup_is_private_and_keeps_file_modes(cli: Cli, tmp_path: Path) -> None:
    with_account(cli).ok("backup", str(tmp_path / "bk"))
    backup = tmp_path / "bk"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for key in ("data/secrets/app-password.key", "data/tls/server.key", "data/tls/ca.key", "database.sqlite"):
        assert stat.S_IMODE((backup / key).stat().st_mode) == 0o600, key
    Cli(None).ok("restore", str(backup), "--data-dir", str(tmp_path / "r"))
    assert stat.S_IMODE((tmp_path / "r").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "r" / "secrets" / "app-password.key").stat().st_mode) == 0o600


def test_restore_needs_to_know_where(cli: Cli, tmp_path: Path) -> None:
    cli.ok("backup", str(tmp_path / "bk"))
    result = Cli(None)("restore", str(tmp_path / "bk"), env={k: "" for k in ("SMTPGATE_CONFIG",)})
    assert result.code == 2 and "--data-dir" in result.stderr


def test_postgresql_restore_recreates_a_lost_schema(tmp_path: Path, pg_schema_url: str, pg_schema_name: str) -> None:
    import psycopg

    need(os.path.exists("/usr/bin/pg_dump"), "pg_dump is not installed (apt-get install postgresql-client)")
    from tests.cli.conftest import _initialised

    cli = with_account(_initialised(tmp_path / "data", pg_schema_url))
    cli.ok("backup", str(tmp_path / "bk"))
    with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{pg_schema_name}" CASCADE')
    Cli(None).ok("restore", str(tmp_path / "bk"), "--data-dir", str(tmp_path / "r"))
    assert logins(Cli(tmp_path / "r" / "smtpgate.toml")) == ["alice@example.com"]
