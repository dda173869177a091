"""`smtpgate audit`: who authenticated from where, what was sent and what was refused;
with `--kind operator`, what operators changed (through any face)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    operations,
    out,
    print_json,
)


def audit(
    since: Annotated[str | None, typer.Option("--since", help="Only the last DURATION, e.g. 1h, 7d.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this login (as an account address).")] = None,
    credential: Annotated[str | None, typer.Option("--credential", help="Only this credential id.")] = None,
    result: Annotated[str | None, typer.Option("--result", help="ok or fail.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="auth, message or connect.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="operator: the operator audit trail instead.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N events, newest first.")] = 200,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Audit events, newest first: every AUTH attempt and every message decision."""
    if kind is not None and kind != "operator":
        if kind in ("auth", "message", "connect") and event is None:
            event, kind = kind, None
        else:
            fail(f"--kind {kind!r}: expected operator (or auth, message, connect)", code=2)
    if kind == "operator":
        _operator(since, limit, config, json)
        return
    with operations(config) as (ops, actor):
        events = ops.audit.events(actor, since_=since, account=account, credential=credential, result=result,
                                  kind=event, limit=limit)
    if json:
        print_json([e.to_json() for e in events])
        return
    table = Table("time", "event", "result", "reason", "login", "credential", "from", "listener", "tls", "mech")
    for stored in events:
        e = stored.event
        table.add_row(
            e.time.strftime("%Y-%m-%d %H:%M:%S"), e.kind, e.result, e.reason or "-", e.login or "-",
            e.credential_id or "-", e.remote_ip or "-", e.listener or "-", e.tls or "-", e.mechanism or "-",
        )
    out.print(table)
    if not events:
        out.print("No audit events match.", markup=False)


def _operator(since: str | None, limit: int, config: ConfigOption, json: bool) -> None:
    with operations(config) as (ops, actor):
        events = ops.audit.operator(actor, since_=since, limit=limit)
    if json:
        print_json([e.to_json() for e in events])
        return
    table = Table("time", "actor", "role", "from", "action", "target", "outcome")
    for e in events:
        table.add_row(e.time.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.role, e.remote_ip or e.face, e.action,
                      e.target or "-", e.outcome)
    out.print(table)
    if not events:
        out.print("No operator events match.", markup=False)


def register(root: typer.Typer) -> None:
    root.command("audit")(audit)
