"""`smtpgate capture ...`: the messages the capture delivery kept."""

from __future__ import annotations

import shutil
import sys
from typing import Annotated

import typer
from rich.table import Table

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    out,
    print_json,
    runtime,
    when,
)
from smtpgate.delivery.capture import MessageNotFound

app = typer.Typer(help="Captured messages (the embedded default delivery).", no_args_is_help=True)


@app.command("list")
def list_(
    limit: Annotated[int | None, typer.Option(help="Newest N only.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Captured messages, newest first."""
    with runtime(config) as rt:
        messages = rt.capture.list(limit=limit)
    if json:
        print_json([m.to_json() for m in messages])
        return
    table = Table("id", "time", "credential", "from", "to", "subject", "size")
    for m in messages:
        table.add_row(
            m.id, when(m.received_at), m.credential_id or "-", m.mail_from or "<>",
            ", ".join(m.rcpt_to), m.subject, str(m.size),
        )
    out.print(table)


@app.command("show")
def show(message_id: str, config: ConfigOption = None) -> None:
    """The raw message, as received (with the Received: header smtpgate added)."""
    with runtime(config) as rt:
        try:
            raw = rt.capture.open_raw(message_id)
        except MessageNotFound:
            fail(f"no captured message {message_id}", "List them with `smtpgate capture list`.")
        with raw:
            sys.stdout.flush()
            shutil.copyfileobj(raw, sys.stdout.buffer)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="capture")
