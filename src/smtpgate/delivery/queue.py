"""The durable delivery queue: accepted mail waits here until it is delivered or bounced.

It is the capture store's layout (so a message is on disk, fsync'd, before its 250)
plus a small mutable state file per message and a few queue-wide files:

    tmp/, messages/<id>.msg    as in capture (one immutable file per message)
    state/<id>.json     attempts, next attempt, held, per-recipient outcome (atomic rewrite;
                        written only once a delivery attempt has something to record)
    holds.json          hold rules (credential ids, accounts): matching mail is never sent
    wakeup              touched by the CLI (`queue retry`, `release`) to wake the worker

A message with no state file is new: due now, nothing delivered. Every change to a
message's state happens under an exclusive flock on its `<id>.msg` (an immutable file,
so the lock is stable), held by the delivery worker for a whole attempt and by the CLI
for an edit: so one process at a time delivers a message, and `queue hold` returns only
once no attempt is in flight. Removal deletes the message file first (it becomes
invisible), then the state.

This is the file implementation of `delivery.MessageQueue` (docs/delivery.md).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from smtpgate.delivery.capture import (
    STALE_AFTER,
    CapturedMessage,
    CaptureStore,
    DirSyncer,
    MessageNotFound,
    _make_dir,
    _open_new,
    _write_all,
)

__all__ = ["Busy", "HoldRules", "MessageState", "QueueEntry", "QueueStore", "RecipientResult"]

log = logging.getLogger(__name__)

STATE_FORMAT = 1
DELIVERED = "delivered"
FAILED = "failed"


class Busy(Exception):
    """Another process holds this message (a delivery attempt is in flight)."""


@dataclass
class RecipientResult:
    status: str   # "delivered" or "failed"
    reply: str    # the remote reply or our reason, for `queue show` and the DSN
    remote: str = ""
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reply": self.reply, "remote": self.remote, "at": self.at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecipientResult:
        return cls(str(data["status"]), str(data.get("reply", "")), str(data.get("remote", "")), str(data.get("at", "")))


@dataclass
class MessageState:
    attempts: int = 0
    next_attempt: datetime | None = None   # None: due now
    held: bool = False
    last_error: str = ""
    recipients: dict[str, RecipientResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "attempts": self.attempts,
            "next_attempt": self.next_attempt.isoformat() if self.next_attempt else None,
            "held": self.held,
            "last_error": self.last_error,
            "recipients": {k: v.to_json() for k, v in self.recipients.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageState:
        nxt = data.get("next_attempt")
        return cls(
            attempts=int(data.get("attempts", 0)),
            next_attempt=datetime.fromisoformat(nxt).astimezone(timezone.utc) if nxt else None,
            held=bool(data.get("held", False)),
            last_error=str(data.get("last_error", "")),
            recipients={k: RecipientResult.from_json(v) for k, v in (data.get("recipients") or {}).items()},
        )


@dataclass(frozen=True)
class HoldRules:
    """Incident response: everything from these credentials or accounts stays put."""

    credentials: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()
    everything: bool = False  # the rules file is unreadable: hold all rather than release any

    def matches(self, message: CapturedMessage) -> bool:
        return (
            self.everything
            or (message.credential_id or "") in self.credentials
            or (message.account or "").lower() in self.accounts
        )

    def to_json(self) -> dict[str, Any]:
        return {"credentials": sorted(self.credentials), "accounts": sorted(self.accounts)}


@dataclass
class QueueEntry:
    """One message with its state, as read under its lock."""

    message: CapturedMessage
    state: MessageState

    @property
    def pending(self) -> tuple[str, ...]:
        """Recipients with no final outcome yet, in envelope order, once each."""
        done = self.state.recipients
        return tuple(dict.fromkeys(r for r in self.message.rcpt_to if r not in done))

    def held_by(self, rules: HoldRules) -> bool:
        return self.state.held or rules.matches(self.message)

    def to_json(self) -> dict[str, Any]:
        return {**self.message.to_json(), **self.state.to_json(), "pending": list(self.pending)}


class Lock:
    """A held message claim (an flock on its message file); release() closes it."""

    lease_seconds: float | None = None  # the kernel ends it with the holder's process

    def __init__(self, fd: int, entry: QueueEntry) -> None:
        self._fd: int | None = fd
        self.entry = entry

    def renew(self) -> None:
        """An flock lasts as long as its holder's process: nothing to renew."""

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Held(Protocol):
    """What `locked()` needs of a claim (`spool.Claim`, which imports this module, promises more)."""

    entry: QueueEntry

    def release(self) -> None: ...


class ClaimedInBlocks:
    """`locked()` over a queue's own `acquire()`: the file queue and the shared one alike."""

    def acquire(self, message_id: str, *, wait: bool = True, timeout: float = 120.0) -> Held:
        raise NotImplementedError

    @contextmanager
    def locked(self, message_id: str, *, wait: bool = True, timeout: float = 120.0) -> Iterator[QueueEntry]:
        """The message under its claim for a `with` block; Busy if `wait` is False and it is taken.

        MessageNotFound if it does not exist or was removed while we waited.
        """
        claim = self.acquire(message_id, wait=wait, timeout=timeout)
        try:
            yield claim.entry
        finally:
            claim.release()


class QueueStore(CaptureStore, ClaimedInBlocks):
    """The queue on local disk; safe to use from several processes."""

    def __init__(self, directory: Path, *, stale_after: timedelta = STALE_AFTER) -> None:
        self.state_dir = Path(directory) / "state"
        self.holds_path = Path(directory) / "holds.json"
        self.wakeup_path = Path(directory) / "wakeup"
        self.holds_location = str(self.holds_path)
        self._listeners: list[Callable[[CapturedMessage], None]] = []
        self._wake_listeners: list[Callable[[str | None], None]] = []
        super().__init__(directory, stale_after=stale_after)
        _make_dir(self.state_dir)
        self.state_syncer = DirSyncer(self.state_dir)

    # ---------------------------------------------------------------- events

    def on_commit(self, listener: Callable[[CapturedMessage], None]) -> None:
        """Call `listener(message)` (from the committing thread) after each durable commit."""
        self._listeners.append(listener)

    def on_wake(self, listener: Callable[[str | None], None]) -> None:
        """`listener(message_id)` after each commit of this process (other processes' commits
        and wake-ups are seen by `wakeup_stamp()` and the worker's scan)."""
        self._wake_listeners.append(listener)

    def committed(self, message: CapturedMessage) -> None:
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:  # noqa: BLE001 - a listener must never fail a commit
                log.exception("queue commit listener failed")
        for wake in self._wake_listeners:
            try:
                wake(message.id)
            except Exception:  # noqa: BLE001
                log.exception("queue wake listener failed")

    def wake(self) -> None:
        """Tell the delivery worker (in any process) to look again now."""
        fd = os.open(self.wakeup_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"%d\n" % time.time_ns())
        finally:
            os.close(fd)
        os.utime(self.wakeup_path)

    def holds_stamp(self) -> int | None:
        try:
            return self.holds_path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def wakeup_stamp(self) -> int:
        try:
            return self.wakeup_path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    # ---------------------------------------------------------------- listing

    def entries(self) -> list[QueueEntry]:
        """Every message with its state, oldest first (read without locks: a snapshot)."""
        found = []
        for message_id in self.ids():
            entry = self._read_entry(message_id)
            if entry is not None:
                found.append(entry)
        found.sort(key=lambda e: (e.message.received_at, e.message.id))
        return found

    def entry(self, message_id: str) -> QueueEntry:
        self._check_id(message_id)
        entry = self._read_entry(message_id)
        if entry is None:
            raise MessageNotFound(message_id)
        return entry

    def _read_entry(self, message_id: str) -> QueueEntry | None:
        message = self._read_meta(message_id)
        if message is None:
            return None
        return QueueEntry(message, self.read_state(message_id))

    def read_state(self, message_id: str) -> MessageState:
        try:
            return MessageState.from_json(json.loads((self.state_dir / f"{message_id}.json").read_bytes()))
        except FileNotFoundError:
            return MessageState()
        except (ValueError, KeyError, TypeError) as exc:
            # A torn state file cannot happen (atomic rename); a hand-edited one can. Starting
            # over may send again to recipients already done: at least once, never lost.
            log.warning("unreadable queue state for %s (%s); delivering to every recipient again", message_id, exc)
            return MessageState()

    # ---------------------------------------------------------------- locking

    def acquire(self, message_id: str, *, wait: bool = True, timeout: float = 120.0) -> Lock:
        """Like `locked`, for holders that keep the lock across awaits; call release()."""
        self._check_id(message_id)
        try:
            fd = os.open(self.path(message_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MessageNotFound(message_id) from None
        try:
            self._flock(fd, message_id, wait=wait, timeout=timeout)
            if os.fstat(fd).st_nlink == 0:
                raise MessageNotFound(message_id)
            entry = self._read_entry(message_id)
            if entry is None:
                raise MessageNotFound(message_id)
        except BaseException:
            os.close(fd)
            raise
        return Lock(fd, entry)

    @staticmethod
    def _flock(fd: int, message_id: str, *, wait: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not wait or time.monotonic() >= deadline:
                    raise Busy(message_id) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def save_state(self, message_id: str, state: MessageState) -> None:
        """Replace the state atomically and durably; call it under the message's lock."""
        final = self.state_dir / f"{message_id}.json"
        tmp = self.state_dir / f".{message_id}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, json.dumps(state.to_json()).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self.state_syncer.synced()

    def remove(self, message_id: str) -> None:
        """Forget a message for good; call it under its lock (or when it is certainly idle)."""
        self.path(message_id).unlink(missing_ok=True)  # invisible first; a crash after this never half-shows it
        (self.state_dir / f"{message_id}.json").unlink(missing_ok=True)

    def delete(self, message_id: str) -> None:
        """Remove a message, waiting for an attempt in flight to end first."""
        with self.locked(message_id):
            self.remove(message_id)

    def read_raw(self, message_id: str) -> bytes:
        with self.open_raw(message_id) as fh:
            return fh.read()

    def enqueue(self, envelope: Any, data: bytes) -> CapturedMessage:
        """Put a message we made ourselves (a DSN) into the queue, durably."""
        writer = self.begin(envelope)
        writer.write(data)
        return writer.commit()

    # ---------------------------------------------------------------- holds

    def hold_rules(self) -> HoldRules:
        try:
            data = json.loads(self.holds_path.read_bytes())
        except FileNotFoundError:
            return HoldRules()
        except ValueError as exc:
            # Unreadable rules must not release held mail: hold everything until fixed.
            log.error("%s is unreadable (%s): holding all mail until it is fixed", self.holds_path, exc)
            return HoldRules(everything=True)
        return HoldRules(
            credentials=frozenset(str(c) for c in data.get("credentials", [])),
            accounts=frozenset(str(a).lower() for a in data.get("accounts", [])),
        )

    def set_hold_rules(self, rules: HoldRules) -> None:
        tmp = self.holds_path.with_name(f".holds.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = _open_new(tmp)
        try:
            _write_all(fd, json.dumps(rules.to_json()).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.holds_path)
        DirSyncer(self.directory).synced()

    def remove_stale(self, older_than: timedelta = STALE_AFTER) -> int:
        removed = super().remove_stale(older_than)
        state_dir = getattr(self, "state_dir", None)
        if state_dir is not None and state_dir.is_dir():
            cutoff = time.time() - older_than.total_seconds()
            for path in state_dir.iterdir():
                orphan = path.name.startswith(".") or not self.path(path.stem).exists()
                try:
                    if orphan and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
