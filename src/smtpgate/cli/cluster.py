"""`smtpgate cluster status`: the nodes of a cluster, as their heartbeats tell."""

from __future__ import annotations

import typer
from rich.table import Table

from smtpgate.cli.common import ConfigOption, JsonOption, operations, out, print_json

app = typer.Typer(help="Several nodes on one PostgreSQL and one Redis (docs/cluster.md).", no_args_is_help=True)


@app.command("status")
def status(config: ConfigOption = None, json: JsonOption = False) -> None:
    """Every node seen lately: version, address, last heartbeat, connections, queue claims."""
    with operations(config) as (ops, actor):
        nodes = ops.cluster.status(actor)
    if json:
        print_json([n.to_json() for n in nodes])
        return
    if not nodes:
        out.print("No node has sent a heartbeat yet.", markup=False)
        return
    table = Table("node", "state", "version", "address", "last heartbeat", "connections", "claims", "processes")
    for n in nodes:
        table.add_row(n.name, "up" if n.up else "DOWN", n.version, n.address,
                      n.last_heartbeat.strftime("%Y-%m-%d %H:%M:%S"), str(n.connections), str(n.claims),
                      str(n.processes))
    out.print(table)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cluster")
