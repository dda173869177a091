"""`smtpgate upstream ...`: the gateway's own credential for the smarthost.

The password is read from standard input (or a hidden prompt), never from an argument,
stored encrypted, and never printed back: `show` says only whether one is set.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    operations,
    out,
    print_json,
    read_secret_from_stdin,
)
from smtpgate.cli.errors import HINTS

app = typer.Typer(help="The smarthost credential used by the relay route.", no_args_is_help=True)


@app.command("set-password")
def set_password(
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from standard input (one line).")] = False,
    config: ConfigOption = None,
) -> None:
    """Store (or rotate) the smarthost password, encrypted; the server picks it up at once."""
    with operations(config) as (ops, actor):
        if stdin:
            password = read_secret_from_stdin("password")
        elif sys.stdin.isatty():
            password = typer.prompt("Smarthost password", hide_input=True, confirmation_prompt=True)
        else:
            fail("no password given", "Pipe it in with --stdin: printf '%s\\n' \"$PW\" | smtpgate upstream set-password --stdin", code=2)
        path = ops.upstream.set_password(actor, password)
    out.print(f"Upstream password stored encrypted in {path}.", markup=False)


@app.command("show")
def show(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Where the relay goes and whether a password is set (never the password)."""
    with operations(config) as (ops, actor):
        state = ops.upstream.show(actor)
    info = state.to_json()
    if json:
        print_json(info)
        return
    for key, value in info.items():
        if key != "problem" or value:
            out.print(f"{key:14} {value}", markup=False)
    if state.problem:
        hint = HINTS.get(state.problem_code)
        if hint:
            out.print(hint({}), markup=False)
        raise typer.Exit(1)


@app.command("test")
def test(config: ConfigOption = None) -> None:
    """Connect to the smarthost with TLS and log in, then quit; no mail is sent."""
    with operations(config) as (ops, actor):
        tls = asyncio.run(ops.upstream.test(actor))
        relay = ops.runtime.config.delivery.relay
    login = f", logged in as {relay.username}" if relay.username else ""
    out.print(f"OK: {relay.host}:{relay.port} over {tls}{login}", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="upstream")
