"""`smtpgate ban list | add | remove`: the sources the guard keeps out.

A ban is written to the database (what `ban list` shows) and, on the Redis backend, put
in place in Redis at once; servers on the in-memory backend pick it up within
`[guard] sync_interval`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from smtpgate.cli.common import ConfigOption, JsonOption, fail, operations, out, print_json
from smtpgate.durations import format_duration, parse_duration
from smtpgate.guard import GuardRefused
from smtpgate.timefmt import iso_utc

app = typer.Typer(help="Banned sources: list, add, remove.", no_args_is_help=True)
T = TypeVar("T")


def _run(ops: Any, action: Callable[[], Awaitable[T]]) -> T:
    """An async ban operation, then the guard backend's connections closed in the same loop."""
    async def go() -> T:
        try:
            return await action()
        finally:
            await ops.bans.close()

    return asyncio.run(go())


@app.command("list")
def list_(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Bans in force, soonest to end first."""
    with operations(config) as (ops, actor):
        records = ops.bans.list(actor)
    if json:
        print_json([r.to_json() for r in records])
        return
    if not records:
        out.print("No bans in force.", markup=False)
        return
    now = datetime.now(UTC)
    table = Table("network", "until", "left", "strikes", "source", "reason")
    for r in records:
        left = format_duration(r.until - now) if r.until > now else "0s"
        table.add_row(r.network, r.until.strftime("%Y-%m-%d %H:%M:%S"), left, str(r.strikes), r.source, r.reason)
    out.print(table)


@app.command("add")
def add(
    cidr: Annotated[str, typer.Argument(help="An address or network: 192.0.2.7, 192.0.2.0/24, 2001:db8::/48.")],
    duration: Annotated[str, typer.Option("--for", help="How long, e.g. 30m, 1h, 7d.")] = "1h",
    reason: Annotated[str, typer.Option("--reason", help="Why (shown in `ban list`).")] = "",
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Ban a source now (servers refuse it at connect with 421 4.7.0)."""
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        fail(f"--for: {exc}", code=2)
    with operations(config) as (ops, actor):
        try:
            ban = _run(ops, lambda: ops.bans.add(actor, cidr, length, reason=reason))
        except GuardRefused as exc:
            fail(str(exc), exc.hint, code=2 if exc.malformed else 1)
        record = next((r for r in ops.bans.list(actor) if r.network == ban.network), None)
    until = datetime.fromtimestamp(ban.until, UTC)
    if json:  # the fields of `ban list --json`
        print_json(record.to_json() if record else {"network": ban.network, "until": iso_utc(until), "reason": ban.reason})
        return
    out.print(f"Banned {ban.network} until {until:%Y-%m-%d %H:%M:%S} UTC", markup=False)


@app.command("remove")
def remove(
    cidr: Annotated[str, typer.Argument(help="The banned address or network, as `ban list` shows it.")],
    config: ConfigOption = None,
) -> None:
    """Lift a ban now, and forget the failures counted against that source."""
    with operations(config) as (ops, actor):
        try:
            _run(ops, lambda: ops.bans.remove(actor, cidr))
        except GuardRefused as exc:
            fail(str(exc), exc.hint, code=2)
    out.print(f"Lifted the ban of {cidr}", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="ban")
