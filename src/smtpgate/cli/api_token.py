"""`smtpgate api-token ...`: operator tokens for the HTTP API (docs/api.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import (
    AllowIpOption,
    ConfigOption,
    JsonOption,
    err,
    operations,
    out,
    print_json,
    when,
)

app = typer.Typer(help="Operator API tokens: create (shown once), list, revoke.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What uses it, e.g. terraform or the ops portal.")],
    role: Annotated[str, typer.Option("--role", help="viewer (reads), operator (also revokes, rotates, bans, holds) or admin.")],
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime such as 90d. Default: no expiry.")] = None,
    allow_ip: AllowIpOption = None,
    notes: Annotated[str, typer.Option(help="Free text.")] = "",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Create a token; it is printed once (only its keyed hash is stored)."""
    with operations(config) as (ops, actor):
        issued = ops.api_tokens.create(actor, name, role, expires=expires, allow_ip=tuple(allow_ip or ()), notes=notes)
    if json:
        print_json({**issued.info.to_json(), "token": issued.secret})
        return
    info = issued.info
    out.print(f"Created API token {info.id} ({info.name}, role {info.role})", markup=False)
    out.print(f"Token (shown once, store it now): {issued.secret}", markup=False)
    if info.expires_at:
        out.print(f"Expires {when(info.expires_at)} UTC", markup=False)
    err.print("Use it as `Authorization: Bearer TOKEN`, or SMTPGATE_API_TOKEN for `smtpgate --api URL`.", markup=False)


@app.command("list")
def list_(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Every API token: name, role, state, last use (never the token)."""
    with operations(config) as (ops, actor):
        tokens = ops.api_tokens.list(actor)
    if json:
        print_json([t.to_json() for t in tokens])
        return
    table = Table("id", "name", "role", "state", "from networks", "expires", "last used", "from")
    for t in tokens:
        table.add_row(t.id, t.name, str(t.role), t.state, ", ".join(t.allowed_networks) or "any", when(t.expires_at),
                      when(t.last_used_at), t.last_used_ip or "-")
    out.print(table)


@app.command("revoke")
def revoke(
    token: Annotated[str, typer.Argument(help="The token's id or name (see `smtpgate api-token list`).")],
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Revoke a token now: its next request is refused."""
    with operations(config) as (ops, actor):
        info = ops.api_tokens.revoke(actor, token)
    if json:
        print_json(info.to_json())
    else:
        out.print(f"Revoked API token {info.id} ({info.name}).", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="api-token")
