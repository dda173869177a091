"""`--help` of every command reads as words for users: no Python type names, one default each."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from smtpgate.cli.main import app


def every_command() -> list[tuple[str, ...]]:
    root = typer.main.get_group(app)
    found: list[tuple[str, ...]] = [()]

    def walk(group, path: tuple[str, ...]) -> None:
        for name in group.list_commands(None):
            command = group.get_command(None, name)
            found.append((*path, name))
            if hasattr(command, "list_commands"):
                walk(command, (*path, name))

    walk(root, ())
    return found


COMMANDS = every_command()


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "smtpgate")
def test_help_shows_no_python_type_names(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"<(bool|str|int|float|path|list\[[^]]*\])>", text), text
    assert not re.search(r"Usage: .*\{\w+\}", text), text
    for line in text.splitlines():
        assert line.count("default:") <= 1, line


def test_serve_workers_has_one_default() -> None:
    text = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    workers = next(line for line in text.splitlines() if "--workers" in line)
    assert "number of cores" in workers and "[default: 0]" not in text


def test_flags_show_no_value_and_values_show_a_word() -> None:
    text = CliRunner().invoke(app, ["account", "add", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--password-stdin\s+Read the password", text)
    assert re.search(r"--name\s+TEXT\s+Display name", text)
    assert "Usage: smtpgate account add [OPTIONS] EMAIL" in text
