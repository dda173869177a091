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
from smtpgate.durations import parse_duration

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


@app.command("delete")
def delete(
    message_ids: Annotated[list[str], typer.Argument(help="The messages, as `capture list` shows them.")],
    config: ConfigOption = None,
) -> None:
    """Delete captured messages by id."""
    with runtime(config) as rt:
        missing = []
        for message_id in message_ids:
            try:
                rt.capture.delete(message_id)
            except MessageNotFound:
                missing.append(message_id)
    for message_id in message_ids:
        if message_id not in missing:
            out.print(f"Deleted {message_id}", markup=False)
    if missing:
        fail(f"no captured message {', '.join(missing)}", "List them with `smtpgate capture list`.")


@app.command("purge")
def purge(
    older_than: Annotated[str | None, typer.Option("--older-than", help="Only messages received longer ago, e.g. 7d.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every captured message.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Delete captured messages older than a duration (--older-than 7d), or all of them (--all)."""
    if (older_than is None) == (not all_):
        fail("say which messages: --older-than DURATION or --all (one of them)", "Example: smtpgate capture purge --older-than 7d", code=2)
    age = None
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as exc:
            fail(f"--older-than: {exc}", code=2)
    with runtime(config) as rt:
        gone = rt.capture.purge(older_than=age)
    if json:
        print_json({"deleted": gone})
        return
    what = "captured message" if len(gone) == 1 else "captured messages"
    out.print(f"Deleted {len(gone)} {what}" + (f" received more than {older_than} ago." if older_than else "."), markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="capture")
