"""The `smtpgate` command: one typer app, each concern in its own module.

A command imports only its own module: `creds list` should not pay for DKIM, the delivery
worker or the token issuer. COMMANDS says which module holds which command; `--help`,
completion and an unknown name load every module (each adds its commands with
`register(app)`), so a command missing from COMMANDS still works, only slower
(tests/cli/test_lazy.py keeps the table complete).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any

import click
import typer
from typer.core import TyperGroup

from smtpgate.cli import helpstyle
from smtpgate.cli.common import ConfigOption
from smtpgate.config import CONFIG_ENV

# command -> module of smtpgate.cli, in the order `--help` lists them
COMMANDS = {
    "init": "init_cmd", "audit": "audit", "doctor": "doctor", "send": "send", "serve": "serve",
    "account": "accounts", "app-password": "creds", "creds": "creds", "alerts": "alerts",
    "ban": "ban", "capture": "capture", "dkim": "dkim", "dns": "dns", "import": "import_cmd",
    "profile": "profile", "queue": "queue", "service-account": "service_account",
    "token": "token", "upstream": "upstream", "backup": "backup", "restore": "backup", "scan": "scan",
}
NOT_COMMANDS = {"main", "common", "helpstyle"}


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

        names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in NOT_COMMANDS]
        order = list(dict.fromkeys([*COMMANDS.values(), *sorted(names)]))
        found: dict[str, click.Command] = {}
        for module_name in order:
            found.update(_commands_of(module_name))
        ranked = sorted(found, key=lambda n: list(COMMANDS).index(n) if n in COMMANDS else len(COMMANDS))
        self.commands.update({name: found[name] for name in ranked if name not in self.commands})
        self._everything_loaded = True

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name in COMMANDS:
                self.commands.update(_commands_of(COMMANDS[cmd_name]))
            if cmd_name not in self.commands:
                self._load_all()
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_all()
        return super().list_commands(ctx)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
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
def main(config: ConfigOption = None) -> None:
    """An SMTP submission gateway built around the SMTP password done right."""
    if config is not None:  # seen by every subcommand's own --config default
        os.environ[CONFIG_ENV] = str(config)


def run() -> None:
    app()
