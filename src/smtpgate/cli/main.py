"""The `smtpgate` command: one typer app, each concern in its own module.

A command imports only its own module: `creds list` should not pay for DKIM, the delivery
worker or the token issuer. Which module holds which command is read from the modules'
`register(app)` functions without importing them (command_modules()); `--help`,
completion and an unknown name load every module, so a command the reading misses still
works, only slower (tests/cli/test_lazy.py checks that it misses none).

typer (0.26 on) carries its own copy of click, `typer._click`: the group below overrides
TyperGroup's methods, so it takes and returns that copy's Context and Command (click the
package is neither a dependency nor what typer raises).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import typer
from typer import _click as click
from typer.core import TyperGroup

from smtpgate.cli import common, helpstyle
from smtpgate.cli.common import ConfigOption
from smtpgate.config import CONFIG_ENV

# the order `--help` lists commands in; others follow, by name
ORDER = ("init", "audit", "doctor", "send", "serve", "account", "app-password", "creds", "alerts", "ban",
         "capture", "dkim", "dns", "import", "profile", "queue", "service-account", "token", "api-token", "upstream")
NOT_COMMANDS = {"main", "common", "helpstyle", "remote"}
_REGISTERED = re.compile(r'name="([\w-]+)"|\.command\("([\w-]+)"\)')


@lru_cache(maxsize=1)
def command_modules() -> dict[str, str]:
    """command -> module of smtpgate.cli, read from each module's `register()` without
    importing it (a millisecond, where importing them all costs most of a second)."""
    found: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem in NOT_COMMANDS or path.stem.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        _, marker, body = text.partition("\ndef register(")
        for match in _REGISTERED.finditer(body if marker else ""):
            found[match[1] or match[2]] = path.stem
    return dict(sorted(found.items(), key=lambda item: (ORDER.index(item[0]) if item[0] in ORDER else len(ORDER), item[0])))


def _commands_of(module_name: str) -> dict[str, click.Command]:
    """The click commands one module registers (on a throwaway app of its own)."""
    module = importlib.import_module(f"smtpgate.cli.{module_name}")
    register = getattr(module, "register", None)
    if register is None:
        return {}
    holder = typer.Typer()
    register(holder)
    return dict(typer.main.get_group(holder).commands)


class LazyGroup(TyperGroup):
    """The root group: loads a command's module when the command is asked for."""

    _everything_loaded = False

    def _load_all(self) -> None:
        if self._everything_loaded:
            return
        import smtpgate.cli as package

        table = command_modules()
        names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in NOT_COMMANDS]
        found: dict[str, click.Command] = {}
        for module_name in dict.fromkeys([*table.values(), *sorted(names)]):
            found.update(_commands_of(module_name))
        ranked = sorted(found, key=lambda n: list(table).index(n) if n in table else len(table))
        self.commands.update({name: found[name] for name in ranked if name not in self.commands})
        self._everything_loaded = True

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            table = command_modules()
            if cmd_name in table:
                self.commands.update(_commands_of(table[cmd_name]))
            if cmd_name not in self.commands:
                self._load_all()
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_all()
        return super().list_commands(ctx)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError:
            self._load_all()  # so that "did you mean" knows every command
            return super().resolve_command(ctx, args)


helpstyle.apply()

app = typer.Typer(
    name="smtpgate",
    cls=LazyGroup,
    help="An SMTP submission gateway built around the SMTP password done right.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, PowerShell)
)


@app.callback()
def main(
    ctx: typer.Context,
    config: ConfigOption = None,
    api: Annotated[str | None, typer.Option("--api", metavar="URL", help="Run the command on a remote server through its REST API (token in $SMTPGATE_API_TOKEN).", show_default=False)] = None,
    api_token_file: Annotated[Path | None, typer.Option("--api-token-file", help="Read the --api operator token from this file.", show_default=False)] = None,
) -> None:
    """An SMTP submission gateway built around the SMTP password done right."""
    if config is not None:  # seen by every subcommand's own --config default
        os.environ[CONFIG_ENV] = str(config)
    common.remote_api = None
    if api is not None or api_token_file is not None:
        from smtpgate.cli import remote

        remote.choose(api, api_token_file, ctx.invoked_subcommand)


def run() -> None:
    app()
