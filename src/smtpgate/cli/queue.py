"""`smtpgate queue ...`: look at the delivery queue and act on it (incident response included).

`hold --credential ID` / `--account EMAIL` is for a leaked credential: it holds every
queued message of that credential or account, and (through a hold rule) every one that
arrives later, until `release` with the same option. A message is held only once no
attempt on it is in flight, so when the command returns nothing of it is being sent.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from smtpgate.cli.common import (
    ConfigOption,
    JsonOption,
    err,
    fail,
    out,
    print_json,
    runtime,
    when,
)
from smtpgate.delivery.capture import MessageNotFound
from smtpgate.delivery.queue import (
    Busy,
    HoldRules,
    MessageState,
    QueueEntry,
    QueueStore,
)

app = typer.Typer(help="The delivery queue: list, inspect, hold, release, retry, delete.", no_args_is_help=True)

CredentialOption = Annotated[str | None, typer.Option("--credential", help="Every message sent with this credential id.")]
AccountOption = Annotated[str | None, typer.Option("--account", help="Every message of this account (login).")]
PROGRESS_FROM = 20  # show a progress bar from this many messages on


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[], None]]:
    progress = Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=total < PROGRESS_FROM or not err.is_terminal,
    )
    with progress:
        task = progress.add_task(what, total=total)
        yield lambda: progress.advance(task)


def _select(queue: QueueStore, message_id: str | None, credential: str | None, account: str | None, everything: bool = False) -> list[str]:
    chosen = [x for x in (message_id, credential, account) if x]
    if len(chosen) != 1 and not (everything and not chosen):
        fail("name the messages: one ID, or --credential ID, or --account EMAIL", code=2)
    if message_id:
        try:
            queue.entry(message_id)
        except MessageNotFound:
            fail(f"no queued message {message_id}", "List them with `smtpgate queue list`.")
        return [message_id]
    entries = queue.entries()
    if credential:
        return [e.message.id for e in entries if e.message.credential_id == credential]
    if account:
        return [e.message.id for e in entries if (e.message.account or "").lower() == account.lower()]
    return [e.message.id for e in entries]


def _each(queue: QueueStore, ids: list[str], what: str, change: Callable[[QueueEntry], MessageState | None]) -> tuple[int, list[str]]:
    """Apply `change` to each message under its lock; returns (changed, busy ids)."""
    changed, busy = 0, []
    with _progress(len(ids), what) as advance:
        for message_id in ids:
            try:
                with queue.locked(message_id, timeout=120) as entry:
                    state = change(entry)
                    if state is not None:
                        queue.save_state(message_id, state)
                        changed += 1
            except MessageNotFound:
                pass  # delivered or deleted meanwhile
            except Busy:
                busy.append(message_id)
            advance()
    return changed, busy


def _report_busy(busy: list[str]) -> None:
    if busy:
        fail(f"{len(busy)} message(s) stayed busy (a delivery attempt did not end in time): {', '.join(busy[:5])}",
             "Run the command again.")


def _rules_for_edit(queue: QueueStore) -> HoldRules:
    rules = queue.hold_rules()
    if rules.everything:
        fail(f"{queue.holds_path} is unreadable, so all mail is held",
             "Fix or remove that file (it lists held credential ids and accounts), then run the command again.")
    return rules


def _held(entry: QueueEntry, rules: HoldRules) -> bool:
    return entry.held_by(rules)


@app.command("list")
def list_(
    held: Annotated[bool, typer.Option("--held", help="Held messages only.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Queued messages, oldest first."""
    with runtime(config) as rt:
        queue = rt.queue
        rules = queue.hold_rules()
        entries = [e for e in queue.entries() if not held or _held(e, rules)]
    if json:
        print_json([{**e.to_json(), "held": _held(e, rules)} for e in entries])
        return
    table = Table("id", "received", "credential", "from", "pending", "attempts", "next", "held", "last error")
    for e in entries:
        table.add_row(
            e.message.id, when(e.message.received_at), e.message.credential_id or "-", e.message.mail_from or "<>",
            ", ".join(e.pending), str(e.state.attempts), when(e.state.next_attempt) if e.state.next_attempt else "now",
            "yes" if _held(e, rules) else "", e.state.last_error[:60],
        )
    out.print(table)
    if not entries:
        err.print("The queue is empty." if not held else "No held messages.", markup=False)


@app.command("show")
def show(
    message_id: str,
    raw: Annotated[bool, typer.Option("--raw", help="Print the message itself.")] = False,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """One message: envelope, state, and each recipient's outcome so far."""
    with runtime(config) as rt:
        queue = rt.queue
        try:
            entry = queue.entry(message_id)
            data = queue.read_raw(message_id) if raw else b""
        except MessageNotFound:
            fail(f"no queued message {message_id}", "List them with `smtpgate queue list`.")
        rules = queue.hold_rules()
    if raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        return
    if json:
        print_json({**entry.to_json(), "held": _held(entry, rules)})
        return
    m, s = entry.message, entry.state
    rows = [
        ("id", m.id), ("received", m.received_at.isoformat()), ("credential", m.credential_id or "-"),
        ("account", m.account or "-"), ("from", m.mail_from or "<>"), ("subject", m.subject), ("size", str(m.size)),
        ("client", f"{m.client_ip} ({m.helo})"), ("attempts", str(s.attempts)),
        ("next attempt", s.next_attempt.isoformat() if s.next_attempt else "now"),
        ("held", "yes" if _held(entry, rules) else "no"), ("last error", s.last_error or "-"),
    ]
    for key, value in rows:
        out.print(f"{key:13} {value}", markup=False)
    for rcpt in m.rcpt_to:
        result = s.recipients.get(rcpt)
        state = f"{result.status}: {result.reply}" if result else "pending"
        out.print(f"{'to':13} {rcpt}  {state}", markup=False)


@app.command("hold")
def hold(
    message_id: Annotated[str | None, typer.Argument(help="A message id.")] = None,
    credential: CredentialOption = None,
    account: AccountOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Keep messages from being delivered until `queue release`."""
    with runtime(config) as rt:
        queue = rt.queue
        if credential or account:
            rules = _rules_for_edit(queue)
            queue.set_hold_rules(HoldRules(
                rules.credentials | ({credential} if credential else set()),
                rules.accounts | ({account.lower()} if account else set()),
            ))
        ids = _select(queue, message_id, credential, account)
        changed, busy = _each(queue, ids, "holding", lambda e: None if e.state.held else replace(e.state, held=True))
    _done(json, "held", len(ids) - len(busy), credential, account, future=bool(credential or account))
    _report_busy(busy)


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
    with runtime(config) as rt:
        queue = rt.queue
        rules = _rules_for_edit(queue) if (credential or account) else queue.hold_rules()
        if all_:
            if message_id or credential or account:
                fail("--all excludes an ID, --credential and --account", code=2)
            queue.set_hold_rules(HoldRules())
        elif credential or account:
            queue.set_hold_rules(HoldRules(
                rules.credentials - ({credential} if credential else set()),
                rules.accounts - ({account.lower()} if account else set()),
            ))
        ids = _select(queue, message_id, credential, account, everything=all_)
        changed, busy = _each(
            queue, ids, "releasing",
            lambda e: replace(e.state, held=False, next_attempt=None) if e.state.held else None,
        )
        queue.wake()
        still = [i for i in ids if i not in busy and _still_held(queue, i)]
    _done(json, "released", changed, credential, account)
    if still:
        err.print(f"{len(still)} message(s) remain held by another hold rule (see `smtpgate queue list --held`).", markup=False)
    _report_busy(busy)


def _still_held(queue: QueueStore, message_id: str) -> bool:
    try:
        return queue.entry(message_id).held_by(queue.hold_rules())
    except MessageNotFound:
        return False


@app.command("retry")
def retry(
    message_id: Annotated[str | None, typer.Argument(help="A message id; without one, every message.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Try now instead of waiting for the next scheduled attempt (held mail stays held)."""
    with runtime(config) as rt:
        queue = rt.queue
        ids = _select(queue, message_id, None, None, everything=True)
        changed, busy = _each(
            queue, ids, "scheduling",
            lambda e: replace(e.state, next_attempt=None) if e.state.next_attempt is not None else None,
        )
        queue.wake()
    _done(json, "scheduled now", len(ids) - len(busy), None, None)
    _report_busy(busy)


@app.command("delete")
def delete(
    message_id: Annotated[str | None, typer.Argument(help="A message id.")] = None,
    credential: CredentialOption = None,
    account: AccountOption = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Remove messages from the queue for good, without a bounce."""
    with runtime(config) as rt:
        queue = rt.queue
        ids = _select(queue, message_id, credential, account)
        deleted, busy = 0, []
        with _progress(len(ids), "deleting") as advance:
            for i in ids:
                try:
                    queue.delete(i)
                    deleted += 1
                except MessageNotFound:
                    pass
                except Busy:
                    busy.append(i)
                advance()
    _done(json, "deleted", deleted, credential, account)
    _report_busy(busy)


def _done(json: bool, verb: str, count: int, credential: str | None, account: str | None, *, future: bool = False) -> None:
    if json:
        print_json({verb.split()[0]: count, "credential": credential, "account": account, "rule": future})
        return
    subject = f" of credential {credential}" if credential else f" of account {account}" if account else ""
    out.print(f"{count} message(s){subject} {verb}.", markup=False)
    if future:
        out.print(f"Messages{subject} that arrive from now on are held too, until `smtpgate queue release"
                  f"{' --credential ' + credential if credential else ' --account ' + str(account)}`.", markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="queue")
