"""`smtpgate account ...`: accounts and their passwords."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    choose_password,
    err,
    fail,
    operations,
    out,
    print_json,
    when,
)
from smtpgate.credentials import AccountInfo

if TYPE_CHECKING:
    from smtpgate.ops.accounts import AccountWithPassword

app = typer.Typer(help="Accounts: logins, passwords, the app-passwords-only switch.", no_args_is_help=True)

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]
Generate = Annotated[bool, typer.Option("--generate", help="Generate a strong password and print it once.")]
RoleOption = Annotated[str | None, typer.Option(
    "--role", metavar="viewer|operator|admin|none",
    help="The operators' console: what the owner may do there (a second factor is required for it); none: no console.",
    show_default=False)]


def _actor() -> str:
    """The local user as the services record it (commands not yet on `ops` use it)."""
    from smtpgate.ops import Actor

    return Actor.local().name


def _show_account(account: AccountInfo) -> None:
    out.print(f"account   {account.login}", markup=False)
    out.print(f"name      {account.display_name or '-'}", markup=False)
    out.print(f"owner     {account.owner or '-'}", markup=False)
    out.print(f"enabled   {'yes' if account.enabled else 'NO (every credential is stopped)'}", markup=False)
    out.print(f"password  {'set' if account.has_password else 'none (app passwords only)'}", markup=False)
    out.print(
        f"app passwords required  {'yes: the account password is refused for SMTP' if account.require_app_passwords else 'no'}",
        markup=False,
    )
    if account.role:
        out.print(f"console   {account.role} (a second factor is required to open it)", markup=False)
    if account.require_second_factor:
        out.print("second factor  required", markup=False)
    if account.notes:
        out.print(f"notes     {account.notes}", markup=False)
    out.print(f"created   {when(account.created_at)}", markup=False)


@app.command("add")
def add(
    email: Annotated[str, typer.Argument(help="The login: an email address.")],
    password_stdin: PasswordStdin = False,
    generate: Generate = False,
    no_password: Annotated[bool, typer.Option("--no-password", help="No account password: app passwords only.")] = False,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    owner: Annotated[str, typer.Option(help="Who is responsible for it.")] = "",
    notes: Annotated[str, typer.Option(help="Free text.")] = "",
    require_app_passwords: Annotated[bool, typer.Option("--require-app-passwords", help="Refuse the account password for SMTP.")] = False,
    invite: Annotated[bool, typer.Option("--invite", help="No password now: print a one-time link where the owner sets it.")] = False,
    expires: Annotated[str | None, typer.Option("--expires", help="How long the --invite link works (default 7d, at most 30d).")] = None,
    require_2fa: Annotated[bool, typer.Option("--require-2fa", help="The owner must add a second factor (asked for first).")] = False,
    role: RoleOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Create an account (with a password from stdin, a prompt, --generate, or an --invite link)."""
    if expires is not None and not invite:
        fail("--expires is the lifetime of an --invite link", "e.g. smtpgate account add EMAIL --invite --expires 3d", code=2)
    if invite and (password_stdin or generate or no_password):
        fail("with --invite the owner sets the password: drop --password-stdin, --generate and --no-password",
             "e.g. smtpgate account add EMAIL --invite", code=2)
    password = None if no_password or invite else choose_password(password_stdin, generate)
    with operations(config) as (ops, actor):
        created = ops.accounts.create(
            actor, email, password=password, generate=generate and not no_password, display_name=name, owner=owner,
            notes=notes, require_app_passwords=require_app_passwords, invite=invite, invite_expires=expires,
            role=role, require_second_factor=require_2fa,
        )
    account = created.account
    if json:
        data = account.to_json()
        if created.password:
            data["password"] = created.password
        if created.invite:
            data["invite"] = {**created.invite.info.to_json(), "url": created.invite_url}
        print_json(data)
        return
    out.print(f"Created account {account.login}", markup=False)
    if created.password:
        out.print(f"Password (shown once): {created.password}", markup=False)
    _print_invite(created)


def _print_invite(created: AccountWithPassword) -> None:
    if created.invite is None:
        return
    info = created.invite.info
    out.print(f"Invitation link (shown once; works once, until {when(info.expires_at)} UTC):", markup=False)
    out.print(f"  {created.invite_url}", markup=False)
    then = "a second factor, then app passwords" if info.require_second_factor else "app passwords"
    out.print(f"Send it to the owner: they set the password there, then {then}.", markup=False)


@app.command("invite")
def invite_(
    email: str,
    expires: Annotated[str | None, typer.Option("--expires", help="How long the link works (default 7d, at most 30d).")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """A new one-time link where the owner sets the password (an older open link stops working)."""
    with operations(config) as (ops, actor):
        created = ops.accounts.invite(actor, email, expires=expires)
    assert created.invite is not None
    if json:
        print_json({**created.invite.info.to_json(), "url": created.invite_url})
        return
    _print_invite(created)


@app.command("list")
def list_(config: ConfigOption = None, json: JsonOption = False) -> None:
    """List every account."""
    with operations(config) as (ops, actor):
        accounts = ops.accounts.list(actor)
    if json:
        print_json([a.to_json() for a in accounts])
        return
    table = Table("login", "name", "enabled", "password", "app passwords required", "created")
    for a in accounts:
        table.add_row(
            a.login, a.display_name, "yes" if a.enabled else "no", "set" if a.has_password else "-",
            "yes" if a.require_app_passwords else "no", when(a.created_at),
        )
    out.print(table)
    if not accounts:
        err.print("No accounts yet: smtpgate account add you@example.com --generate", markup=False)


@app.command("show")
def show(email: str, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Show one account."""
    with operations(config) as (ops, actor):
        account = ops.accounts.get(actor, email)
    print_json(account.to_json()) if json else _show_account(account)


@app.command("disable")
def disable(email: str, config: ConfigOption = None) -> None:
    """Disable an account: every one of its credentials stops at once."""
    with operations(config) as (ops, actor):
        ops.accounts.set_enabled(actor, email, False)
    out.print(f"Disabled {email.lower()}: none of its credentials authenticate any more.", markup=False)


@app.command("enable")
def enable(email: str, config: ConfigOption = None) -> None:
    """Enable a disabled account again."""
    with operations(config) as (ops, actor):
        ops.accounts.set_enabled(actor, email, True)
    out.print(f"Enabled {email.lower()}.", markup=False)


@app.command("set-password")
def set_password(
    email: str,
    password_stdin: PasswordStdin = False,
    generate: Generate = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Set or replace the account password."""
    password = choose_password(password_stdin, generate)
    with operations(config) as (ops, actor):
        changed = ops.accounts.set_password(actor, email, password=password, generate=password is None)
    account = changed.account
    if json:
        print_json({"login": account.login, **({"password": changed.password} if changed.password else {})})
        return
    out.print(f"Password of {account.login} changed. Every client that used the old one must get the new one.", markup=False)
    if changed.password:
        out.print(f"Password (shown once): {changed.password}", markup=False)


@app.command("set")
def set_(
    email: str,
    require_app_passwords: Annotated[bool | None, typer.Option("--require-app-passwords/--allow-account-password", help="Refuse or allow the account password for SMTP.", show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who is responsible for it.")] = None,
    notes: Annotated[str | None, typer.Option(help="Free text.")] = None,
    role: RoleOption = None,
    require_2fa: Annotated[bool | None, typer.Option("--require-2fa/--no-require-2fa", help="Require a second factor of the owner, or not.", show_default=False)] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Change an account's details, its app-passwords-only switch, its console role or its second-factor rule."""
    with operations(config) as (ops, actor):
        account = ops.accounts.update(
            actor, email, display_name=name, owner=owner, notes=notes, require_app_passwords=require_app_passwords,
            role=role, require_second_factor=require_2fa,
        )
    print_json(account.to_json()) if json else _show_account(account)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="account")
