"""The delivery queue: list, show, hold, release, retry, delete.

`hold` by credential or account is for a leaked credential: it holds every queued
message of it and, through a hold rule, every one that arrives later, until `release`
with the same selection. A message is held only once no attempt on it is in flight
(each change is made under the message's lock), so when `hold` returns, nothing of it
is being sent.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from smtpgate.credentials.api_tokens import Role
from smtpgate.delivery.capture import MessageNotFound
from smtpgate.delivery.queue import (
    Busy,
    HoldRules,
    MessageState,
    QueueEntry,
)
from smtpgate.delivery.spool import MessageQueue
from smtpgate.errors import Conflict, Invalid, NotFound
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern

Tick = Callable[[int, int], None]
"""Called after each message with (done, total): a face may show progress."""
LOCK_TIMEOUT = 120.0


@dataclass(frozen=True)
class Selection:
    """Which messages: one id, every message of a credential or an account, or (where allowed) all."""

    message_id: str | None = None
    credential: str | None = None
    account: str | None = None
    everything: bool = False

    @property
    def target(self) -> str:
        return (self.message_id or (f"credential:{self.credential}" if self.credential else "")
                or (f"account:{self.account}" if self.account else "") or "all")

    @property
    def is_rule(self) -> bool:
        return bool(self.credential or self.account)


@dataclass(frozen=True)
class QueueResult:
    """What a queue action did: how many messages changed, which stayed busy, which stay held."""

    count: int
    selection: Selection
    busy: list[str] = field(default_factory=list)
    still_held: list[str] = field(default_factory=list)
    rule: bool = False


@dataclass(frozen=True)
class QueuedMessage:
    entry: QueueEntry
    held: bool


class Queue(Concern):
    @property
    def _queue(self) -> MessageQueue:
        return self.rt.queue

    def list(self, actor: Actor, *, held_only: bool = False) -> builtins.list[QueuedMessage]:
        rules = self._queue.hold_rules()
        items = [QueuedMessage(e, e.held_by(rules)) for e in self._queue.entries()]
        return [i for i in items if i.held or not held_only]

    def show(self, actor: Actor, message_id: str) -> QueuedMessage:
        entry = self._entry(message_id)
        return QueuedMessage(entry, entry.held_by(self._queue.hold_rules()))

    def raw(self, actor: Actor, message_id: str) -> bytes:
        """The message itself: its content is more than metadata, so an operator's to read."""
        self.journal.allow(actor, Role.OPERATOR, "queue.raw", message_id)
        self._entry(message_id)
        try:
            return self._queue.read_raw(message_id)
        except MessageNotFound:
            raise _not_found(message_id) from None

    def hold(self, actor: Actor, selection: Selection, tick: Tick | None = None) -> QueueResult:
        with self.journal.step(actor, "queue.hold", selection.target, needs=Role.OPERATOR) as details:
            if selection.is_rule:
                rules = self._rules_for_edit()
                self._queue.set_hold_rules(HoldRules(
                    rules.credentials | ({selection.credential} if selection.credential else set()),
                    rules.accounts | ({selection.account.lower()} if selection.account else set()),
                ))
            ids = self._select(selection)
            _, busy = self._each(ids, lambda e: None if e.state.held else replace(e.state, held=True), tick)
            details.update(count=len(ids) - len(busy), busy=len(busy))
            return self._busy(QueueResult(len(ids) - len(busy), selection, busy, rule=selection.is_rule))

    def release(self, actor: Actor, selection: Selection, tick: Tick | None = None) -> QueueResult:
        """`everything` releases every held message and drops every hold rule."""
        with self.journal.step(actor, "queue.release", selection.target, needs=Role.OPERATOR) as details:
            if selection.everything and (selection.message_id or selection.is_rule):
                raise Invalid("releasing everything excludes a message id, a credential and an account",
                              code="selection-conflict", field="all")
            rules = self._rules_for_edit() if selection.is_rule else self._queue.hold_rules()
            if selection.everything:
                self._queue.set_hold_rules(HoldRules())
            elif selection.is_rule:
                self._queue.set_hold_rules(HoldRules(
                    rules.credentials - ({selection.credential} if selection.credential else set()),
                    rules.accounts - ({selection.account.lower()} if selection.account else set()),
                ))
            ids = self._select(selection)
            changed, busy = self._each(
                ids, lambda e: replace(e.state, held=False, next_attempt=None) if e.state.held else None, tick)
            self._queue.wake()
            still = [i for i in ids if i not in busy and self._still_held(i)]
            details.update(count=changed, busy=len(busy), still_held=len(still))
            return self._busy(QueueResult(changed, selection, busy, still))

    def retry(self, actor: Actor, message_id: str | None = None, tick: Tick | None = None) -> QueueResult:
        """Try now instead of at the next scheduled attempt (held mail stays held); no id: every message."""
        selection = Selection(message_id=message_id, everything=message_id is None)
        with self.journal.step(actor, "queue.retry", selection.target, needs=Role.OPERATOR) as details:
            ids = self._select(selection)
            _, busy = self._each(
                ids, lambda e: replace(e.state, next_attempt=None) if e.state.next_attempt is not None else None, tick)
            self._queue.wake()
            details.update(count=len(ids) - len(busy), busy=len(busy))
            return self._busy(QueueResult(len(ids) - len(busy), selection, busy))

    def delete(self, actor: Actor, selection: Selection, tick: Tick | None = None) -> QueueResult:
        """Remove messages for good, without a bounce."""
        with self.journal.step(actor, "queue.delete", selection.target) as details:
            ids = self._select(selection)
            deleted, busy = 0, []
            for done, message_id in enumerate(ids, 1):
                try:
                    self._queue.delete(message_id)
                    deleted += 1
                except MessageNotFound:
                    pass
                except Busy:
                    busy.append(message_id)
                if tick:
                    tick(done, len(ids))
            details.update(count=deleted, busy=len(busy))
            return self._busy(QueueResult(deleted, selection, busy))

    # ------------------------------------------------------------------ helpers

    def _entry(self, message_id: str) -> QueueEntry:
        try:
            return self._queue.entry(message_id)
        except MessageNotFound:
            raise _not_found(message_id) from None

    def _select(self, s: Selection) -> builtins.list[str]:
        chosen = [x for x in (s.message_id, s.credential, s.account) if x]
        if len(chosen) != 1 and not (s.everything and not chosen):
            raise Invalid("name the messages: one id, a credential or an account", code="selection-required",
                          field="message_id")
        if s.message_id:
            self._entry(s.message_id)
            return [s.message_id]
        entries = self._queue.entries()
        if s.credential:
            return [e.message.id for e in entries if e.message.credential_id == s.credential]
        if s.account:
            return [e.message.id for e in entries if (e.message.account or "").lower() == s.account.lower()]
        return [e.message.id for e in entries]

    def _each(self, ids: builtins.list[str], change: Callable[[QueueEntry], MessageState | None],
              tick: Tick | None) -> tuple[int, builtins.list[str]]:
        """Apply `change` to each message under its lock; (changed, busy ids)."""
        changed, busy = 0, []
        for done, message_id in enumerate(ids, 1):
            try:
                with self._queue.locked(message_id, timeout=LOCK_TIMEOUT) as entry:
                    state = change(entry)
                    if state is not None:
                        self._queue.save_state(message_id, state)
                        changed += 1
            except MessageNotFound:
                pass  # delivered or deleted meanwhile
            except Busy:
                busy.append(message_id)
            if tick:
                tick(done, len(ids))
        return changed, busy

    def _rules_for_edit(self) -> HoldRules:
        rules = self._queue.hold_rules()
        if rules.everything:
            raise Conflict(f"{self._queue.holds_location} is unreadable, so all mail is held",
                           "Fix or remove that file (it lists held credential ids and accounts), then try again.",
                           code="hold-rules-unreadable", path=self._queue.holds_location)
        return rules

    def _still_held(self, message_id: str) -> bool:
        try:
            return self._queue.entry(message_id).held_by(self._queue.hold_rules())
        except MessageNotFound:
            return False

    @staticmethod
    def _busy(result: QueueResult) -> QueueResult:
        if result.busy:
            raise QueueBusy(result)
        return result


class QueueBusy(Conflict):
    """Some messages stayed locked by a delivery attempt; the others were changed."""

    code = "queue-busy"

    def __init__(self, result: QueueResult) -> None:
        super().__init__(f"{len(result.busy)} message(s) stayed busy (a delivery attempt did not end in time): "
                         f"{', '.join(result.busy[:5])}", "Try again.", busy=result.busy[:20], count=result.count)
        self.result = result


def _not_found(message_id: str) -> NotFound:
    return NotFound(f"no queued message {message_id}", code="message-not-found", message_id=message_id)
