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
    out,
    print_json,
    read_secret_from_stdin,
    runtime,
)
from smtpgate.delivery.routes import upstream_secrets
from smtpgate.delivery.upstream import UpstreamCredentialError

app = typer.Typer(help="The smarthost credential used by the relay route.", no_args_is_help=True)


@app.command("set-password")
def set_password(
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from standard input (one line).")] = False,
    config: ConfigOption = None,
) -> None:
    """Store (or rotate) the smarthost password, encrypted; the server picks it up at once."""
    with runtime(config) as rt:
        secrets = upstream_secrets(rt.config)
        if stdin:
            password = read_secret_from_stdin("password")
        elif sys.stdin.isatty():
            password = typer.prompt("Smarthost password", hide_input=True, confirmation_prompt=True)
        else:
            fail("no password given", "Pipe it in with --stdin: printf '%s\\n' \"$PW\" | smtpgate upstream set-password --stdin", code=2)
        try:
            secrets.set_password(password)
        except UpstreamCredentialError as exc:
            fail(str(exc))
    out.print(f"Upstream password stored encrypted in {secrets.password_path}.", markup=False)


@app.command("show")
def show(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Where the relay goes and whether a password is set (never the password)."""
    with runtime(config) as rt:
        relay = rt.config.delivery.relay
        secrets = upstream_secrets(rt.config)
        problem = ""
        if secrets.is_set():
            try:
                secrets.password()
            except UpstreamCredentialError as exc:
                problem = str(exc)
        info = {
            "host": relay.host, "port": relay.port, "tls": relay.tls, "verify": relay.verify,
            "username": relay.username, "password_set": secrets.is_set(), "password_file": str(secrets.password_path),
            "key_source": secrets.key_source(),
            "problem": problem,
        }
    if json:
        print_json(info)
        return
    for key, value in info.items():
        if key != "problem" or value:
            out.print(f"{key:14} {value}", markup=False)
    if problem:
        raise typer.Exit(1)


@app.command("test")
def test(config: ConfigOption = None) -> None:
    """Connect to the smarthost with TLS and log in, then quit; no mail is sent."""
    from smtpgate.delivery.relay import RelayRoute

    with runtime(config) as rt:
        if not rt.config.delivery.relay.host:
            fail("no smarthost is configured", "Set [delivery.relay] host in the config.", code=2)
        route = RelayRoute.from_config(rt.config)
        try:
            tls = asyncio.run(route.check())
        except UpstreamCredentialError as exc:
            fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - report any failure plainly
            fail(f"{route.remote}: {exc}", "Check [delivery.relay] and the password (`smtpgate upstream set-password`).")
    out.print(f"OK: {route.remote} over {tls}" + (f", logged in as {rt.config.delivery.relay.username}" if rt.config.delivery.relay.username else ""), markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="upstream")
