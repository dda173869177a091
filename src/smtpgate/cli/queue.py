"""`smtpgate queue ...`: look at the delivery queue and act on it (incident response included).

`hold --credential ID` / `--account EMAIL` is for a leaked credential: it holds every
queued message of that credential or account, and (through a hold rule) every one that
arrives later, until `release` with the same option. The logic is `smtpgate.ops.queue`;
this module only parses options and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    err,
    fail_with,
    operations,
    out,
    print_json,
    when,
)
from smtpgate.ops.queue import QueueBusy, QueueResult, Selection

app = typer.Typer(help="The delivery queue: list, inspect, hold, release, retry, delete.", no_args_is_help=True)

CredentialOption = Annotated[str | None, typer.Option("--credential", help="Every message sent with this credential id.")]
AccountOption = Annotated[str | None, typer.Option("--account", help="Every message of this account (login).")]
PROGRESS_FROM = 20  # show a progress bar from this many messages on


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal for long selections, fed by the operation's (done, total)."""
    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )
    task: list[TaskID] = []

    def tick(done: int, total: int) -> None:
        if total < PROGRESS_FROM:
            return
        if not task:
            task.append(progress.add_task(what, total=total))
        progress.update(task[0], completed=done)

    with progress:
        yield tick


@app.command("list")
def list_(
    held: Annotated[bool, typer.Option("--held", help="Held messages only.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Queued messages, oldest first."""
    with operations(config) as (ops, actor):
        items = ops.queue.list(actor, held_only=held)
    if json:
        print_json([{**i.entry.to_json(), "held": i.held} for i in items])
        return
    table = Table("id", "received", "credential", "from", "pending", "attempts", "next", "held", "last error")
    for i in items:
        e = i.entry
        table.add_row(
            e.message.id, when(e.message.received_at), e.message.credential_id or "-", e.message.mail_from or "<>",
            ", ".join(e.pending), str(e.state.attempts), when(e.state.next_attempt) if e.state.next_attempt else "now",
            "yes" if i.held else "", e.state.last_error[:60],
        )
    out.print(table)
    if not items:
        err.print("The queue is empty." if not held else "No held messages.", markup=False)


@app.command("show")
def show(
    message_id: str,
    raw: Annotated[bool, typer.Option("--raw", help="Print the message itself.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """One message: envelope, state, and each recipient's outcome so far."""
    with operations(config) as (ops, actor):
        item = ops.queue.show(actor, message_id)
        data = ops.queue.raw(actor, message_id) if raw else b""
    if raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return
    if json:
        print_json({**item.entry.to_json(), "held": item.held})
        return
    m, s = item.entry.message, item.entry.state
    rows = [
        ("id", m.id), ("received", m.received_at.isoformat()), ("credential", m.credential_id or "-"),
        ("account", m.account or "-"), ("from", m.mail_from or "<>"), ("subject", m.subject), ("size", str(m.size)),
        ("client", f"{m.client_ip} ({m.helo})"), ("attempts", str(s.attempts)),
        ("next attempt", s.next_attempt.isoformat() if s.next_attempt else "now"),
        ("held", "yes" if item.held else "no"), ("last error", s.last_error or "-"),
    ]
    for key, value in rows:
        out.print(f"{key:13} {value}", markup=False)
    for rcpt in m.rcpt_to:
        result = s.recipients.get(rcpt)
        state = f"{result.status}: {result.reply}" if result else "pending"
        out.print(f"{'to':13} {rcpt}  {state}", markup=False)


def _act(config: ConfigOption, json: bool, verb: str, what: str, action: str, *args: object) -> QueueResult | None:
    """Run a queue action (a method of `ops.queue`, local or remote); print what it did (also when some
    messages stayed busy)."""
    with operations(config) as (ops, actor):
        try:
            with _progress(what) as tick:
                result: QueueResult = getattr(ops.queue, action)(actor, *args, tick)
        except QueueBusy as exc:
            _done(json, verb, exc.result)
            fail_with(exc)
    _done(json, verb, result)
    return result


@app.command("hold")
def hold(
    message_id: Annotated[str | None, typer.Argument(help="A message id.")] = None,
    credential: CredentialOption = None,
    account: AccountOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Keep messages from being delivered until `queue release`."""
    _act(config, json, "held", "holding", "hold", Selection(message_id, credential, account))


@app.command("release")
def release(
    message_id: Annotated[str | None, typer.Argument(help="A message id.")] = None,
    credential: CredentialOption = None,
    account: AccountOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Every held message, and drop every hold rule.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Let held messages go again (they are delivered now)."""
    result = _act(config, json, "released", "releasing", "release",
                  Selection(message_id, credential, account, everything=all_))
    if result is not None and result.still_held:
        err.print(f"{len(result.still_held)} message(s) remain held by another hold rule "
                  "(see `smtpgate queue list --held`).", markup=False)


@app.command("retry")
def retry(
    message_id: Annotated[str | None, typer.Argument(help="A message id; without one, every message.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Try now instead of waiting for the next scheduled attempt (held mail stays held)."""
    _act(config, json, "scheduled now", "scheduling", "retry", message_id)


@app.command("delete")
def delete(
    message_id: Annotated[str | None, typer.Argument(help="A message id.")] = None,
    credential: CredentialOption = None,
    account: AccountOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Remove messages from the queue for good, without a bounce."""
    _act(config, json, "deleted", "deleting", "delete", Selection(message_id, credential, account))


def _done(json: bool, verb: str, result: QueueResult) -> None:
    credential, account = result.selection.credential, result.selection.account
    if json:
        print_json({verb.split()[0]: result.count, "credential": credential, "account": account, "rule": result.rule})
        return
    subject = f" of credential {credential}" if credential else f" of account {account}" if account else ""
    out.print(f"{result.count} message(s){subject} {verb}.", markup=False)
    if result.rule:
        out.print(f"Messages{subject} that arrive from now on are held too, until `smtpgate queue release"
                  f"{' --credential ' + credential if credential else ' --account ' + str(account)}`.", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="queue")
