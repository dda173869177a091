"""A command loads what it needs: the command table is complete, and a read command on a
current schema imports neither Alembic nor the modules of other commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.cli.conftest import Cli


PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = ["smtpgate", *sys.argv[1:]]
from smtpgate.cli.main import run  # what the console script calls
run()
"""


def imported_by(cli: Cli, *args: str) -> set[str]:
    env = {**os.environ, "SMTPGATE_CONFIG": str(cli.config)}
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(re.search(r"^MODULES (.*)$", proc.stderr, re.M)[1].split())  # type: ignore[index]


def test_a_read_command_on_a_current_schema_loads_only_its_own(cli: Cli) -> None:
    cli.ok("account", "add", "a@example.com", "--no-password")  # the schema is current from here
    modules = imported_by(cli, "creds", "list")
    assert "smtpgate.cli.creds" in modules and "sqlalchemy" in modules  # it did run
    heavy = {m for m in modules if m.split(".")[0] in {"alembic", "joserfc", "cryptography", "dkim", "zxcvbn"}}
    assert heavy == set()
    others = {m for m in modules if m.startswith("smtpgate.cli.")} - {"smtpgate.cli.creds", "smtpgate.cli.accounts", "smtpgate.cli.common", "smtpgate.cli.main", "smtpgate.cli.helpstyle"}
    assert others == set()
    assert not any(m.startswith(("smtpgate.delivery.", "smtpgate.credentials.tokens", "smtpgate.doctor")) for m in modules)


def test_a_new_database_is_still_migrated(tmp_path) -> None:
    Cli(None).ok("init", "--data-dir", str(tmp_path / "d"))
    database = tmp_path / "d" / "smtpgate.db"
    database.unlink()
    cli = Cli(tmp_path / "d" / "smtpgate.toml")
    modules = imported_by(cli, "account", "list")
    assert "alembic" in modules  # no schema yet: Alembic made it
    assert cli.ok("account", "list", "--json").json() == []


def test_the_command_table_names_every_command_in_help_order() -> None:
    import typer

    from smtpgate.cli.main import LazyGroup, app, command_modules

    group = typer.main.get_group(app)
    assert isinstance(group, LazyGroup)
    assert group.list_commands(None) == list(command_modules())  # type: ignore[arg-type]
    assert command_modules()["creds"] == "creds" and command_modules()["account"] == "accounts"


def test_help_lists_every_command(cli: Cli) -> None:
    from smtpgate.cli.main import command_modules

    shown = cli.ok("--help").stdout
    for name in command_modules():
        assert re.search(rf"^│ {re.escape(name)} ", shown, re.M), name
    assert "Did you mean 'creds'" in cli("cred", "list").stderr
