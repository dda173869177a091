"""`smtpgate service-account ...`: machines that send with short-lived tokens, not passwords."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import (
    AllowForeignOption,
    AllowFromOption,
    AllowIpOption,
    ConfigOption,
    JsonOption,
    MaxPerDayOption,
    MaxPerHourOption,
    MaxRcptPerDayOption,
    MaxRcptPerHourOption,
    err,
    operations,
    out,
    print_json,
    scope_request,
    scope_rows,
    when,
)
from smtpgate.credentials.service_accounts import IssuedClient, ServiceAccountInfo
from smtpgate.durations import format_duration

app = typer.Typer(help="Service accounts: an OAuth client each, sending with access tokens.", no_args_is_help=True)


def _show(info: ServiceAccountInfo) -> None:
    s = info.scopes
    rows = [
        ("client id", info.id), ("login", info.login), ("name", info.name or "-"), ("state", info.state),
        ("created", f"{when(info.created_at)} by {info.created_by or '-'}"), ("revoked", when(info.revoked_at)),
        ("token lifetime", format_duration(info.token_lifetime) if info.token_lifetime else "default"),
        ("last token", when(info.last_issued_at)),
        ("last used", f"{when(info.last_used_at)} from {info.last_used_ip or '-'}"), ("uses", str(info.use_count)),
        *scope_rows(s),
    ]
    if info.notes:
        rows.append(("notes", info.notes))
    for label, value in rows:
        out.print(f"{label:<15}{value}", markup=False)


def _print_client(issued: IssuedClient, json: bool, verb: str, admin: str) -> None:
    if json:
        print_json({**issued.account.to_json(), "client_secret": issued.client_secret})
        return
    a = issued.account
    out.print(f"{verb} service account {a.login}", markup=False)
    out.print(f"Client id:     {a.id}", markup=False)
    out.print(f"Client secret (shown once, store it now): {issued.client_secret}", markup=False)
    err.print(f"Tokens: POST {admin}/oauth/token with grant_type=client_credentials "
              "(HTTP Basic client id and secret), or `smtpgate token issue`.", markup=False)


@app.command("create")
def create(
    login: Annotated[str, typer.Argument(help="Its identity, address-like, e.g. billing-bot@example.com.")],
    name: Annotated[str, typer.Option("--name", help="What it is, e.g. the billing service.")] = "",
    allow_from: AllowFromOption = None,
    allow_ip: AllowIpOption = None,
    allow_foreign_sender: AllowForeignOption = False,
    max_per_hour: MaxPerHourOption = None,
    max_per_day: MaxPerDayOption = None,
    max_rcpt_per_hour: MaxRcptPerHourOption = None,
    max_rcpt_per_day: MaxRcptPerDayOption = None,
    token_lifetime: Annotated[str | None, typer.Option(help="Its tokens' lifetime, e.g. 15m (default: [tokens] access_token_lifetime).")] = None,
    notes: Annotated[str, typer.Option(help="Free text.")] = "",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Create a service account; its client secret is printed once."""
    scopes = scope_request(allow_from, allow_ip, max_per_hour, max_per_day, max_rcpt_per_hour, max_rcpt_per_day,
                           allow_foreign_sender)
    with operations(config) as (ops, actor):
        issued = ops.service_accounts.create(
            actor, login, name=name, scopes=scopes, token_lifetime=token_lifetime, notes=notes,
        )
        admin = f"{ops.runtime.config.admin.scheme}://{ops.runtime.config.admin.listen}"
    _print_client(issued, json, "Created", admin)


@app.command("list")
def list_(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Every service account: its client id, state, last token and last use."""
    with operations(config) as (ops, actor):
        accounts = ops.service_accounts.list(actor)
    if json:
        print_json([a.to_json() for a in accounts])
        return
    table = Table("client id", "login", "name", "state", "may send as", "last token", "last used", "uses")
    for a in accounts:
        table.add_row(a.id, a.login, a.name or "-", a.state, ", ".join(a.scopes.allowed_senders),
                      when(a.last_issued_at), when(a.last_used_at), str(a.use_count))
    out.print(table)


@app.command("show")
def show(account: Annotated[str, typer.Argument(help="Client id or login.")], config: ConfigOption = None,
         json: JsonOption = False) -> None:
    """Everything about one service account."""
    with operations(config) as (ops, actor):
        info = ops.service_accounts.get(actor, account)
    print_json(info.to_json()) if json else _show(info)


@app.command("revoke")
def revoke(account: Annotated[str, typer.Argument(help="Client id or login.")], config: ConfigOption = None,
           json: JsonOption = False) -> None:
    """Revoke now: its tokens stop working at once and it gets no new ones."""
    with operations(config) as (ops, actor):
        info = ops.service_accounts.revoke(actor, account)
    if json:
        print_json(info.to_json())
    else:
        out.print(f"Revoked service account {info.login} ({info.id}); its tokens no longer authenticate.", markup=False)


@app.command("reset-secret")
def reset_secret(account: Annotated[str, typer.Argument(help="Client id or login.")], config: ConfigOption = None,
                 json: JsonOption = False) -> None:
    """A new client secret, printed once; the old one stops working now."""
    with operations(config) as (ops, actor):
        issued = ops.service_accounts.reset_secret(actor, account)
        admin = f"{ops.runtime.config.admin.scheme}://{ops.runtime.config.admin.listen}"
    _print_client(issued, json, "New client secret for", admin)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="service-account")
