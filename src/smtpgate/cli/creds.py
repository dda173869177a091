"""`smtpgate app-password create` and `smtpgate creds ...`: the credential inventory."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

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
    fail,
    operations,
    out,
    print_json,
    scope_request,
    scope_rows,
    when,
)
from smtpgate.credentials import (
    CredentialInfo,
    CredentialState,
    IssuedSecret,
)
from smtpgate.durations import format_duration

app_password_app = typer.Typer(help="App passwords: one per app or device, generated, shown once.", no_args_is_help=True)
creds_app = typer.Typer(help="The credential inventory: list, show, revoke, rotate, due.", no_args_is_help=True)


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
    if info.canary:
        rows.append(("canary", "yes: never logs in; any use is alerted and the source banned"))
    if info.delivery_target:
        rows.append(("delivered to", info.delivery_target + (f", then {' '.join(info.delivery_hook)}" if info.delivery_hook else "")))
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
            c.id, c.account, str(c.kind) + (" (canary)" if c.canary else ""), c.name, str(c.state), when(c.expires_at),
            when(c.last_used_at), c.last_used_ip or "-", str(c.use_count),
        )
    return table


@app_password_app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="The account it belongs to.")],
    name: Annotated[str, typer.Option("--name", help="The app or device, e.g. billing-app or printer-2F.")],
    allow_from: AllowFromOption = None,
    allow_ip: AllowIpOption = None,
    allow_foreign_sender: AllowForeignOption = False,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime such as 90d. Default: no expiry.")] = None,
    max_per_hour: MaxPerHourOption = None,
    max_per_day: MaxPerDayOption = None,
    max_rcpt_per_hour: MaxRcptPerHourOption = None,
    max_rcpt_per_day: MaxRcptPerDayOption = None,
    notes: Annotated[str, typer.Option(help="Free text: for a canary, where it is planted.")] = "",
    canary: Annotated[bool, typer.Option("--canary", help="A canary: plant it where no one should find it; any use of it is refused, alerted and banned.")] = False,
    apple_profile: Annotated[Path | None, typer.Option("--apple-profile", metavar="FILE", help="Also write an Apple configuration profile (.mobileconfig) for it.")] = None,
    with_secret: Annotated[bool, typer.Option("--with-secret", help="Put the app password into the --apple-profile file (mode 0600).")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Generate an app password for one app or device; its secret is printed once."""
    scopes = scope_request(allow_from, allow_ip, max_per_hour, max_per_day, max_rcpt_per_hour, max_rcpt_per_day,
                           allow_foreign_sender)
    if with_secret and apple_profile is None:
        fail("--with-secret goes with --apple-profile FILE", "e.g. --apple-profile phone.mobileconfig --with-secret", code=2)
    with operations(config) as (ops, actor):
        if apple_profile is not None:
            ops.client_setup.check_apple_profile(email)  # before: a refused profile must not leave an app password
        issued = ops.app_passwords.create(actor, email, name, scopes=scopes, expires=expires, notes=notes, canary=canary)
        _print_issued(issued, json, "Created canary" if canary else "Created")  # first: a profile error must not lose it
        if apple_profile is not None:
            _write_profile(apple_profile, ops.client_setup.apple_profile(
                actor, issued.credential.id, password=issued.secret if with_secret else None))
            if not json:
                out.print(f"Apple profile written to {apple_profile}" + (" (it holds the secret)" if with_secret else ""),
                          markup=False)


def _write_profile(path: Path, profile: bytes) -> None:
    """0600 whether or not the secret is inside: a profile names the account and its server."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(profile)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}", "Give a writable path to --apple-profile / --output.", code=1)


@creds_app.command("apple-profile")
def apple_profile_(
    credential_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write it there (default: standard output).")] = None,
    config: ConfigOption = None,
) -> None:
    """An Apple configuration profile (.mobileconfig) for an app password, without its secret."""
    with operations(config) as (ops, actor):
        profile = ops.client_setup.apple_profile(actor, credential_id)
    if output is None:
        sys.stdout.buffer.write(profile)
    else:
        _write_profile(output, profile)
        out.print(f"Apple profile for {credential_id} written to {output}", markup=False)


@creds_app.command("list")
def list_(
    account: Annotated[str | None, typer.Option(help="Only this account's credentials.")] = None,
    state: Annotated[CredentialState | None, typer.Option(help="Only credentials in this state.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """The inventory: every credential, whose it is, what state, last used when and where."""
    with operations(config) as (ops, actor):
        creds = ops.credentials.list(actor, account=account, state=state)
    print_json([c.to_json() for c in creds]) if json else out.print(_table(creds))


@creds_app.command("show")
def show(credential_id: str, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Everything about one credential."""
    with operations(config) as (ops, actor):
        info = ops.credentials.get(actor, credential_id)
    print_json(info.to_json()) if json else _show(info)


@creds_app.command("revoke")
def revoke(credential_id: str, config: ConfigOption = None, json: JsonOption = False) -> None:
    """Revoke a credential now: its next authentication fails."""
    with operations(config) as (ops, actor):
        before = ops.credentials.get(actor, credential_id)
        info = before if before.revoked_at else ops.credentials.revoke(actor, credential_id)
    if json:
        print_json({**info.to_json(), "already_revoked": before.revoked_at is not None})
    elif before.revoked_at:  # the wanted state holds: exit 0, so that scripts can repeat it
        out.print(f"{info.id} ({info.name}) of {info.account} was already revoked at {when(info.revoked_at)} UTC; "
                  "nothing changed.", markup=False)
    else:
        out.print(f"Revoked {info.id} ({info.name}) of {info.account}.", markup=False)


@creds_app.command("rotate")
def rotate(
    credential_id: Annotated[str | None, typer.Argument(help="The credential to rotate (or --due).", show_default=False)] = None,
    overlap: Annotated[str | None, typer.Option(help="How long the old secret keeps working (default from config, 24h).")] = None,
    deliver: Annotated[str | None, typer.Option("--deliver", metavar="TARGET", help="Write the successor to file:PATH, env:PATH:VAR or keyring:SERVICE:USER; remembered for the next rotation.")] = None,
    then: Annotated[str | None, typer.Option("--then", metavar="CMD", help="Run CMD after delivering (e.g. 'systemctl reload app'); remembered.")] = None,
    due: Annotated[bool, typer.Option("--due", help="Rotate every due credential that has a delivery target.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Issue a successor (printed once, or delivered); the old secret keeps working for the overlap."""
    from smtpgate.credentials.secret_targets import parse_hook, parse_target

    if due == (credential_id is not None):
        fail("name one credential to rotate, or --due for every due one", "e.g. smtpgate creds rotate ID, or smtpgate creds rotate --due", code=2)
    with operations(config) as (ops, actor):
        target = parse_target(deliver) if deliver else None
        hook = parse_hook(then) if then else None
        if due:
            _rotate_due(ops, actor, overlap, json)
            return
        assert credential_id is not None
        issued, old = ops.credentials.rotate(actor, credential_id, overlap=overlap, target=target, hook=hook)
    _report_rotation(issued, old, json)


def _report_rotation(issued: Any, old: Any, as_json: bool) -> None:
    from smtpgate.credentials.secret_targets import run_hook

    delivered = issued.credential.delivery_target
    hook = issued.credential.delivery_hook
    result = run_hook(hook) if delivered and hook else None
    if delivered:
        payload = {"credential": issued.credential.to_json(), "delivered_to": delivered,
                   "hook": {"argv": list(hook), "exit": result.returncode} if result else None}
        if as_json:
            print_json(payload)
        else:
            out.print(f"Rotated: new {issued.credential.id}, delivered to {delivered} (the secret is not printed).", markup=False)
            out.print(f"The old secret {old.id} retires at the new one's first use, at the latest {when(old.expires_at)} UTC.", markup=False)
            if result is not None:
                out.print(f"Hook {' '.join(hook)}: exit {result.returncode}", markup=False)
        if result is not None and result.returncode != 0:
            err.print(f"error: the hook exited {result.returncode}: {result.stderr.strip()[:500]}", markup=False)
            err.print("The new secret was delivered; run the hook by hand once it is fixed.", markup=False)
            raise typer.Exit(1)
        return
    _print_issued(issued, as_json, "Rotated: new")
    if not as_json:
        out.print(f"The old secret {old.id} stops at {when(old.expires_at)} UTC; update the app before then.", markup=False)


def _rotate_due(ops: Any, actor: Any, overlap: str | None, as_json: bool) -> None:
    from smtpgate.credentials.secret_targets import run_hook

    rotated, skipped, failed = [], [], 0
    for info in ops.credentials.due(actor):
        if str(info.kind) == "device":  # due because silent: nothing to rotate
            continue
        if not info.delivery_target:
            skipped.append(info.id)
            continue
        issued, _ = ops.credentials.rotate(actor, info.id, overlap=overlap)
        result = run_hook(issued.credential.delivery_hook) if issued.credential.delivery_hook else None
        failed += bool(result and result.returncode)
        rotated.append({"old": info.id, "new": issued.credential.id, "delivered_to": issued.credential.delivery_target,
                        "hook_exit": result.returncode if result else None})
    if as_json:
        print_json({"rotated": rotated, "skipped_no_target": skipped})
    else:
        for item in rotated:
            hook = "" if item["hook_exit"] is None else f", hook exit {item['hook_exit']}"
            out.print(f"{item['old']} -> {item['new']}: delivered to {item['delivered_to']}{hook}", markup=False)
        for cid in skipped:
            out.print(f"{cid}: due, but has no delivery target; rotate it with --deliver once", markup=False)
        out.print(f"{len(rotated)} rotated, {len(skipped)} skipped", markup=False)
    if failed:
        raise typer.Exit(1)


@creds_app.command("due")
def due(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Credentials to rotate (past their rotation age or expiring soon) and devices silent for a month."""
    with operations(config) as (ops, actor):
        creds = ops.credentials.due(actor)
        age = format_duration(ops.runtime.config.credentials.rotation_age)
    if json:
        print_json([c.to_json() for c in creds])
        return
    if not creds:
        out.print(f"Nothing due: no app password is older than {age} or expiring soon, no device silent for a month.", markup=False)
        return
    out.print(_table(creds))
    silent = [c for c in creds if str(c.kind) == "device"]
    if len(silent) < len(creds):
        out.print("Rotate each with: smtpgate creds rotate ID", markup=False)
    for c in silent:
        out.print(f"Device {c.name} ({c.id}) has not sent since {when(c.last_used_at or c.created_at)}: "
                  f"unplugged or replaced? If it is gone: smtpgate creds revoke {c.id}", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app_password_app, name="app-password")
    root.add_typer(creds_app, name="creds")
