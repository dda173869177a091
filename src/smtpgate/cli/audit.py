"""`smtpgate audit`: who authenticated from where, what was sent and what was refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import ConfigOption, JsonOption, fail, out, print_json, runtime
from smtpgate.durations import parse_duration


def since_option(value: str | None, option: str = "--since") -> datetime | None:
    """A duration back from now ("1h", "7d") as a UTC time; exit 2 when it does not parse."""
    if value is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError as exc:
        fail(f"{option}: {exc}", code=2)


def audit(
    since: Annotated[str | None, typer.Option("--since", help="Only the last DURATION, e.g. 1h, 7d.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this login (as an account address).")] = None,
    credential: Annotated[str | None, typer.Option("--credential", help="Only this credential id.")] = None,
    result: Annotated[str | None, typer.Option("--result", help="ok or fail.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="auth, message or connect.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N events, newest first.")] = 200,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Audit events, newest first: every AUTH attempt and every message decision."""
    if result is not None and result not in ("ok", "fail"):
        fail(f"--result {result!r}: expected ok or fail", code=2)
    if event is not None and event not in ("auth", "message", "connect"):
        fail(f"--event {event!r}: expected auth, message or connect", code=2)
    start = since_option(since)
    with runtime(config) as rt:
        events = rt.audit_store.query(
            since=start, account=account, credential_id=credential, result=result, kind=event, limit=limit,
        )
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


def register(root: typer.Typer) -> None:
    root.command("audit")(audit)
