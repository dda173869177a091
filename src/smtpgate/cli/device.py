"""`smtpgate device ...`: printers, scanners and other devices on the legacy listener."""

from __future__ import annotations

from typing import Annotated

import typer

from smtpgate.cli.common import ConfigOption, JsonOption, out, print_json, runtime

app = typer.Typer(help="Devices that cannot do modern TLS or AUTH, each bound to its address (legacy listener).",
                  no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The device, e.g. printer-2f.")],
    account: Annotated[str, typer.Option("--account", help="The account it sends for.")],
    ip: Annotated[str, typer.Option("--ip", help="Its address (or a network of at most 16).")],
    allow_from: Annotated[str, typer.Option("--allow-from", help="The one sender address it uses.")],
    allow_to: Annotated[list[str], typer.Option("--allow-to", help="A recipient ADDRESS or @DOMAIN it may send to (repeatable).")],
    auth: Annotated[str, typer.Option("--auth", help="plain (AUTH PLAIN/LOGIN, its own secret) or none (known by its address).")] = "plain",
    tls: Annotated[str, typer.Option("--tls", help="none, legacy (TLS 1.0/1.1) or modern (1.2+).")] = "none",
    max_per_day: Annotated[int, typer.Option("--max-per-day", help="Messages per day.")] = 200,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """A device credential; with --auth plain its secret is printed once and works on the legacy listener only."""
    from smtpgate.cli.accounts import _actor
    from smtpgate.credentials.devices import DeviceRequest

    request = DeviceRequest(name, ip, allow_from, tuple(allow_to), auth, tls, max_per_day)
    with runtime(config) as rt:
        issued = rt.credentials.create_device(account, request, actor=_actor())
    device = issued.credential
    if json:
        print_json({**device.to_json(), **({"secret": issued.secret} if issued.secret else {})})
        return
    out.print(f"Created device {device.id} ({device.name}) for {device.account}, from {', '.join(device.scopes.allowed_networks)}",
              markup=False)
    if issued.secret:
        out.print(f"Secret (shown once, store it in the device now): {issued.secret}", markup=False)
    for weakness in device.weaknesses:
        out.print(f"  weak: {weakness}", markup=False)
    out.print("It works on the legacy listener only ([legacy] listen in the config), never on 587 or 465.", markup=False)


@app.command("list")
def list_(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Every device credential, with what it lacks."""
    from smtpgate.credentials import CredentialKind

    with runtime(config) as rt:
        devices = [c for c in rt.credentials.list_credentials() if c.kind is CredentialKind.DEVICE]
    if json:
        print_json([d.to_json() for d in devices])
        return
    for d in devices:
        out.print(f"{d.id}  {d.name}  {d.account}  {', '.join(d.scopes.allowed_networks)}  {d.state}  "
                  f"last used {d.last_used_at or 'never'}  [{'; '.join(d.weaknesses)}]", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="device")
