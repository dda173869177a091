"""The spool and queue interfaces: what a storage of accepted mail must promise.

Two implementations: files on local disk (`capture.CaptureStore`, `queue.QueueStore`)
and PostgreSQL shared by the nodes of a cluster (`pg_queue.PgCaptureStore`,
`pg_queue.PgQueueStore`). The contracts below are what
the SMTP session, the delivery worker and the CLI rely on; docs/delivery.md explains them.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from smtpgate.delivery.capture import CapturedMessage, Envelope
    from smtpgate.delivery.queue import HoldRules, MessageState, QueueEntry


class MessageWriter(Protocol):
    """One message being received, streamed (never whole in memory)."""

    message_id: str
    size: int

    def write(self, chunk: bytes) -> None: ...

    def headers_section(self) -> bytes | None:
        """The header block so far (None past the header size limit)."""
        ...

    def commit(self) -> CapturedMessage:
        """Durable before it returns (the caller answers 250 after it), then visible.

        Blocking; called in the disk executor. Concurrent commits may share their
        durability work (one directory fsync, one database transaction) but none
        returns before its own message is durable. On error nothing is left behind.
        """
        ...

    def abort(self) -> None:
        """Discard; idempotent, also after a failed commit."""
        ...


class Spool(Protocol):
    def begin(self, envelope: Envelope) -> MessageWriter:
        """Start a message; its writer's commit() makes it durable and visible."""
        ...


class CaptureBox(Spool, Protocol):
    """Captured messages (the capture route's store): what `smtpgate capture` reads."""

    def ids(self) -> list[str]: ...

    def list(self, *, limit: int | None = None) -> list[CapturedMessage]:
        """Newest first."""
        ...

    def get(self, message_id: str) -> CapturedMessage: ...

    def open_raw(self, message_id: str) -> BinaryIO: ...

    def delete(self, message_id: str) -> None: ...

    def purge(self, *, older_than: timedelta | None = None,
              now: datetime | None = None) -> builtins.list[str]: ...


class Claim(Protocol):
    """One holder's exclusive right to attempt a message (a lease).

    File queue: an flock, which the kernel ends with the holder's process. A shared
    queue: a row lease that the holder renews while its attempt runs and that lapses
    when the holder dies, so another node may take the message afterwards.
    """

    entry: QueueEntry
    lease_seconds: float | None  # renew within this; None: it cannot lapse while the holder lives

    def renew(self) -> None:
        """Extend the lease (a no-op where the lease cannot lapse while the holder lives)."""
        ...

    def release(self) -> None: ...


class MessageQueue(Spool, Protocol):
    """Accepted mail waiting for delivery: claims, per-message state, wake-ups, holds."""

    def on_commit(self, listener: Callable[[CapturedMessage], None]) -> None:
        """`listener(message)` after each durable commit made by this process."""
        ...

    def on_wake(self, listener: Callable[[str | None], None]) -> None:
        """`listener(message_id)` when a message arrived (here or, shared, on any node), or
        `listener(None)` when a wake-up was asked for; from any thread."""
        ...

    def wake(self) -> None:
        """Tell every delivery worker to look again now (after `queue retry`, `release`)."""
        ...

    def wakeup_stamp(self) -> int:
        """Changes whenever wake() was called anywhere; compared between scans."""
        ...

    def holds_stamp(self) -> int | None:
        """Changes whenever the hold rules change."""
        ...

    def ids(self) -> list[str]:
        """Visible messages, oldest first."""
        ...

    def entries(self) -> list[QueueEntry]:
        """Every message with its state, oldest first (a snapshot)."""
        ...

    def entry(self, message_id: str) -> QueueEntry:
        """Message and state without a claim (a snapshot); MessageNotFound if gone."""
        ...

    def acquire(self, message_id: str, *, wait: bool = True, timeout: float = 120.0) -> Claim:
        """Claim a message: Busy if another holder has it (and `wait` is False)."""
        ...

    def locked(self, message_id: str, *, wait: bool = True,
               timeout: float = 120.0) -> AbstractContextManager[QueueEntry]:
        """acquire() for the length of a `with` block."""
        ...

    def save_state(self, message_id: str, state: MessageState) -> None:
        """Durably replace the state; under the message's claim."""
        ...

    def remove(self, message_id: str) -> None:
        """Forget the message for good; under its claim."""
        ...

    def delete(self, message_id: str) -> None:
        """Remove a message, waiting for an attempt in flight to end first."""
        ...

    def read_raw(self, message_id: str) -> bytes: ...

    def enqueue(self, envelope: Envelope, data: bytes) -> CapturedMessage:
        """Put a message we made (a DSN) into the queue, durably."""
        ...

    holds_location: str
    """Where the hold rules live, for an operator's error message."""

    def hold_rules(self) -> HoldRules: ...

    def set_hold_rules(self, rules: HoldRules) -> None: ...
