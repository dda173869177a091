"""The `smtpgate` command: one typer app, each concern in its own module."""

from __future__ import annotations

import importlib
import os
import pkgutil

import typer

from smtpgate.cli import accounts, creds, init_cmd
from smtpgate.cli.common import ConfigOption
from smtpgate.config import CONFIG_ENV

app = typer.Typer(
    name="smtpgate",
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


app.command("init")(init_cmd.init)
app.add_typer(accounts.app, name="account")
app.add_typer(creds.app_password_app, name="app-password")
app.add_typer(creds.creds_app, name="creds")


def _register_concerns() -> None:
    """Every other `smtpgate.cli` module with a `register(app)` adds its own commands."""
    import smtpgate.cli as package

    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name in {"main", "common", "accounts", "creds", "init_cmd"}:
            continue
        loaded = importlib.import_module(f"smtpgate.cli.{module.name}")
        register = getattr(loaded, "register", None)
        if register is not None:
            register(app)


def run() -> None:
    _register_concerns()
    app()
