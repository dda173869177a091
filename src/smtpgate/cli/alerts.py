"""`smtpgate alerts list`: what the anomaly rules raised, and where each alert was sent."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import ConfigOption, JsonOption, operations, out, print_json

app = typer.Typer(help="Anomaly alerts: leaked-credential signs, bursts of failures, volume.", no_args_is_help=True)


@app.command("list")
def list_(
    since: Annotated[str | None, typer.Option("--since", help="Only the last DURATION, e.g. 24h.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule, e.g. new-network.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N alerts, newest first.")] = 100,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Alerts, newest first."""
    with operations(config) as (ops, actor):
        alerts = ops.alerts.list(actor, since_=since, rule=rule, limit=limit)
    if json:
        print_json([a.to_json() for a in alerts])
        return
    if not alerts:
        out.print("No alerts.", markup=False)
        return
    table = Table("id", "time", "rule", "severity", "summary", "webhook", "email")
    for a in alerts:
        table.add_row(str(a.id), a.time.strftime("%Y-%m-%d %H:%M:%S"), a.rule, a.severity, a.summary, a.webhook, a.email)
    out.print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="alerts")
