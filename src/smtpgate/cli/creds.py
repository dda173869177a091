"""`smtpgate app-password create` and `smtpgate creds ...`: the credential inventory."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.accounts import _actor
from smtpgate.cli.common import (
    AllowFromOption,
    AllowIpOption,
    ConfigOption,
    JsonOption,
    MaxPerDayOption,
    MaxPerHourOption,
    MaxRcptPerDayOption,
    MaxRcptPerHourOption,
    fail,
    out,
    print_json,
    runtime,
    scope_request,
    scope_rows,
    when,
)
from smtpgate.credentials import (
    CredentialInfo,
    CredentialState,
    IssuedSecret,
)
from smtpgate.durations import format_duration, parse_duration

app_password_app = typer.Typer(help="App passwords: one per app or device, generated, shown once.", no_args_is_help=True)
creds_app = typer.Typer(help="The credential inventory: list, show, revoke, rotate, due.", no_args_is_help=True)


def _duration(value: str | None, option: str):
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        fail(f"{option}: {exc}", code=2)


def _print_issued(issued: IssuedSecret, json: bool, verb: str) -> None:
    if json:
        print_json({**issued.credential.to_json(), "secret": issued.secret})
        return
    c = issued.credential
    out.print(f"{verb} {c.kind} {c.id} ({c.name}) for {c.account}", markup=False)
    out.print(f"Secret (shown once, store it now): {issued.secret}", markup=False)
    if c.expires_at:
        out.print(f"Expires {when(c.expires_at)} UTC", markup=False)


def _show(info: CredentialInfo) -> None:
    s = info.scopes
    rows = [
        ("id", info.id), ("account", info.account), ("kind", str(info.kind)), ("name", info.name),
        ("state", str(info.state)), ("created", f"{when(info.created_at)} by {info.created_by or '-'}"),
        ("expires", when(info.expires_at)), ("revoked", when(info.revoked_at)),
        ("last used", f"{when(info.last_used_at)} from {info.last_used_ip or '-'}"), ("uses", str(info.use_count)),
        *scope_rows(s),
    ]
    if info.rotated_from:
        rows.append(("rotated from", info.rotated_from))
    if info.replaced_by:
        rows.append(("replaced by", info.replaced_by))
    if info.notes:
        rows.append(("notes", info.notes))
    for label, value in rows:
        out.print(f"{label:<14}{value}", markup=False)


def _table(creds: list[CredentialInfo]) -> Table:
    table = Table("id", "account", "kind", "name", "state", "expires", "last used", "from", "uses")
    for c in creds:
        table.add_row(
            c.id, c.account, str(c.kind), c.name, str(c.state), when(c.expires_at),
            when(c.last_used_at), c.last_used_ip or "-", str(c.use_count),
        )
    return table


@app_password_app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="The account it belongs to.")],
    name: Annotated[str, typer.Option("--name", help="The app or device, e.g. billing-app or printer-2F.")],
    allow_from: AllowFromOption = None,
    allow_ip: AllowIpOption = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime such as 90d. Default: no expiry.")] = None,
    max_per_hour: MaxPerHourOption = None,
    max_per_day: MaxPerDayOption = None,
    max_rcpt_per_hour: MaxRcptPerHourOption = None,
    max_rcpt_per_day: MaxRcptPerDayOption = None,
    notes: Annotated[str, typer.Option(help="Free text.")] = "",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Generate an app password for one app or device; its secret is printed once."""
    scopes = scope_request(allow_from, allow_ip, max_per_hour, max_per_day, max_rcpt_per_hour, max_rcpt_per_day)
    lifetime = _duration(expires, "--expires")
    with runtime(config) as rt:
        issued = rt.credentials.create_app_password(
            email, name, scopes=scopes, expires_in=lifetime, notes=notes, actor=_actor()
        )
    _print_issued(issued, json, "Created")


@creds_app.command("list")
def list_(
    account: Annotated[str | None, typer.Option(help="Only this account's credentials.")] = None,
    state: Annotated[CredentialState | None, typer.Option(help="Only credentials in this state.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """The inventory: every credential, whose it is, what state, last used when and where."""
    with runtime(config) as rt:
        creds = rt.credentials.list_credentials(account=account, state=state)
    print_json([c.to_json() for c in creds]) if json else out.print(_table(creds))


@creds_app.command("show")
def show(credential_id: str, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Everything about one credential."""
    with runtime(config) as rt:
        info = rt.credentials.get_credential(credential_id)
    print_json(info.to_json()) if json else _show(info)


@creds_app.command("revoke")
def revoke(credential_id: str, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Revoke a credential now: its next authentication fails."""
    with runtime(config) as rt:
        info = rt.credentials.revoke(credential_id, actor=_actor())
    if json:
        print_json(info.to_json())
    else:
        out.print(f"Revoked {info.id} ({info.name}) of {info.account}.", markup=False)


@creds_app.command("rotate")
def rotate(
    credential_id: str,
    overlap: Annotated[str | None, typer.Option(help="How long the old secret keeps working (default from config, 24h).")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Issue a successor (printed once); the old secret keeps working for the overlap."""
    window = _duration(overlap, "--overlap")
    with runtime(config) as rt:
        issued = rt.credentials.rotate(credential_id, overlap=window, actor=_actor())
        old = rt.credentials.get_credential(credential_id)
    _print_issued(issued, json, "Rotated: new")
    if not json:
        out.print(f"The old secret {old.id} stops at {when(old.expires_at)} UTC; update the app before then.", markup=False)


@creds_app.command("due")
def due(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Credentials to rotate: past their rotation age or expiring soon."""
    with runtime(config) as rt:
        creds = rt.credentials.due()
        age = format_duration(rt.config.credentials.rotation_age)
    if json:
        print_json([c.to_json() for c in creds])
        return
    if not creds:
        out.print(f"Nothing due: no app password is older than {age} or expiring soon.", markup=False)
        return
    out.print(_table(creds))
    out.print("Rotate each with: smtpgate creds rotate ID", markup=False)
