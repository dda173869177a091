"""The queue and the capture store in PostgreSQL, shared by the nodes of a cluster.

The second implementation of `delivery.spool` (the files of `capture.py` and `queue.py`
are the first), used with `[cluster] enabled = true`; the SMTP session, the delivery
worker and `ops/` see no difference. What each promise becomes here:

- durable before the 250: a message streams into a temporary file of the node (in
  memory up to a MiB), and `commit()` inserts it, in pieces of at most a MiB, in one
  transaction; it returns once PostgreSQL has committed it (synchronous commit, and
  PostgreSQL's own WAL group commit shares the flush between concurrent commits). A
  database that cannot be reached makes `begin()` or `commit()` raise `SpoolUnavailable`,
  an OSError, which the session answers with 451 4.3.0: nothing is acknowledged that is
  not committed.
- claims: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)` takes a message
  whose lease is free or lapsed and sets a lease of `lease` seconds, compared with the
  database's clock. The holder renews it while its attempt runs (`Claim.renew()`); a node
  that dies stops renewing, and after the lease another node takes the message: delivery
  stays at least once, never lost. Every state change names the holder's token, so a
  holder whose lease lapsed cannot overwrite the new holder's record.
- wake-ups: a commit and `wake()` send NOTIFY in their transaction; every node's listener
  (`store.notify`) hears it and wakes its delivery worker at once.
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from smtpgate.delivery.capture import (
    ID_PATTERN,
    CaptureError,
    CapturedMessage,
    Envelope,
    MessageNotFound,
    _HeaderCollector,
    _make_dir,
    message_metadata,
    new_message_id,
)
from smtpgate.delivery.queue import Busy, ClaimedInBlocks, HoldRules, MessageState, QueueEntry
from smtpgate.store.db import Store, StoreUnavailable
from smtpgate.store.models_cluster import ClusterValueRow, MessageChunkRow, QueuedMessageRow
from smtpgate.store.notify import Listener, Notifier

__all__ = ["LeaseLost", "PgCaptureStore", "PgClaim", "PgQueueStore", "SpoolUnavailable"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
IN_MEMORY = 1 << 20
QUEUE, CAPTURE = "queue", "capture"
TOPIC = "queue"
ALL = "*"


class SpoolUnavailable(OSError):
    """The database that holds the spool cannot be reached (the session answers 451 4.3.0)."""


class LeaseLost(Busy):
    """This holder's lease lapsed and the message may be another holder's now."""


@contextmanager
def _unavailable_as_oserror() -> Iterator[None]:
    try:
        yield
    except (OperationalError, StoreUnavailable) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise SpoolUnavailable(str(reason).strip().splitlines()[0] if str(reason).strip() else "database error") from None


# --------------------------------------------------------------------------- writer


class PgSpoolWriter:
    """One message being received: a node-local temporary file until commit()."""

    def __init__(self, store: PgCaptureStore, envelope: Envelope, message_id: str) -> None:
        self.message_id = message_id
        self.envelope = envelope
        self.size = 0
        self._store = store
        self._headers = _HeaderCollector()
        self._file: Any = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, mode="w+b", dir=str(store.tmp_dir))
        self._done = False

    def write(self, chunk: bytes) -> None:
        if self._done:
            raise CaptureError(f"message {self.message_id} is already committed or aborted")
        self._file.write(chunk)
        self.size += len(chunk)
        self._headers.feed(chunk)

    def headers_section(self) -> bytes | None:
        return self._headers.section()

    def commit(self) -> CapturedMessage:
        """Committed in PostgreSQL before it returns; on error nothing is left behind."""
        if self._done:
            raise CaptureError(f"message {self.message_id} is already committed or aborted")
        message = message_metadata(self.message_id, self.envelope, self.size, self._headers.section())
        try:
            self._file.seek(0)
            with _unavailable_as_oserror(), self._store.db.engine.begin() as conn:
                self._store.insert(conn, message, self._file)
        finally:
            self._done = True
            self._file.close()
        self._store.committed(message)
        return message

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._file.close()

    def __enter__(self) -> PgSpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


# --------------------------------------------------------------------------- capture


class PgCaptureStore:
    """Captured messages in the database (`box` "capture"): what `smtpgate capture` reads."""

    box = CAPTURE

    def __init__(self, db: Store, tmp_dir: Path, *, notifier: Notifier | None = None) -> None:
        self.db = db
        self.tmp_dir = Path(tmp_dir)
        _make_dir(self.tmp_dir)
        self.notifier = notifier or Notifier(db)

    def committed(self, message: CapturedMessage) -> None:
        """After a message is durable; for subclasses."""

    def insert(self, conn: Connection, message: CapturedMessage, data: BinaryIO) -> None:
        conn.execute(insert(QueuedMessageRow).values(
            id=message.id, box=self.box, received_at=message.received_at, size=message.size,
            meta=message.to_json(), state=None))
        seq = 0
        while chunk := data.read(CHUNK):
            conn.execute(insert(MessageChunkRow).values(message_id=message.id, seq=seq, data=chunk))
            seq += 1

    def begin(self, envelope: Envelope) -> PgSpoolWriter:
        if envelope.received_at.tzinfo is None:
            raise ValueError("Envelope.received_at must be timezone-aware (UTC)")
        return PgSpoolWriter(self, envelope, new_message_id(envelope.received_at))

    def ids(self) -> list[str]:
        with self._read() as conn:
            return list(conn.scalars(select(QueuedMessageRow.id).where(QueuedMessageRow.box == self.box)
                                     .order_by(QueuedMessageRow.id)))

    def list(self, *, limit: int | None = None) -> list[CapturedMessage]:
        """Newest first."""
        if limit is not None and limit <= 0:
            return []
        query = (select(QueuedMessageRow.meta).where(QueuedMessageRow.box == self.box)
                 .order_by(QueuedMessageRow.received_at.desc(), QueuedMessageRow.id.desc()).limit(limit))
        with self._read() as conn:
            return [CapturedMessage.from_json(meta) for meta in conn.scalars(query)]

    def get(self, message_id: str) -> CapturedMessage:
        self._check_id(message_id)
        with self._read() as conn:
            meta = conn.scalar(select(QueuedMessageRow.meta).where(
                QueuedMessageRow.id == message_id, QueuedMessageRow.box == self.box))
        if meta is None:
            raise MessageNotFound(message_id)
        return CapturedMessage.from_json(meta)

    def read_raw(self, message_id: str) -> bytes:
        self._check_id(message_id)
        with self._read() as conn:
            found = conn.scalar(select(QueuedMessageRow.id).where(
                QueuedMessageRow.id == message_id, QueuedMessageRow.box == self.box))
            if found is None:
                raise MessageNotFound(message_id)
            chunks = conn.scalars(select(MessageChunkRow.data).where(MessageChunkRow.message_id == message_id)
                                  .order_by(MessageChunkRow.seq))
            return b"".join(chunks)

    def open_raw(self, message_id: str) -> BinaryIO:
        return io.BytesIO(self.read_raw(message_id))

    def delete(self, message_id: str) -> None:
        self._check_id(message_id)
        with self._write() as conn:
            gone = conn.execute(delete(QueuedMessageRow).where(
                QueuedMessageRow.id == message_id, QueuedMessageRow.box == self.box)).rowcount
        if not gone:
            raise MessageNotFound(message_id)

    def purge(self, *, older_than: timedelta | None = None, now: datetime | None = None) -> builtins.list[str]:
        query = delete(QueuedMessageRow).where(QueuedMessageRow.box == self.box)
        if older_than is not None:
            query = query.where(QueuedMessageRow.received_at <= (now or datetime.now(timezone.utc)) - older_than)
        with self._write() as conn:
            return sorted(conn.scalars(query.returning(QueuedMessageRow.id)))

    def remove_stale(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Nothing half-written ever reaches the database; temporary files remove themselves."""
        del older_than
        return 0

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with _unavailable_as_oserror(), self.db.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with _unavailable_as_oserror(), self.db.engine.begin() as conn:
            yield conn

    @staticmethod
    def _check_id(message_id: str) -> None:
        if not ID_PATTERN.match(message_id):
            raise MessageNotFound(message_id)


# --------------------------------------------------------------------------- queue


class PgClaim:
    """A lease on one message; renew() before `lease_seconds` pass, release() at the end."""

    def __init__(self, queue: PgQueueStore, entry: QueueEntry, token: str) -> None:
        self.entry = entry
        self.token = token
        self.lease_seconds: float | None = queue.lease
        self._queue = queue
        self._released = False

    def renew(self) -> None:
        """LeaseLost if it lapsed meanwhile (the message may be another holder's now)."""
        if not self._queue.renew(self.entry.message.id, self.token):
            raise LeaseLost(self.entry.message.id)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._queue.release(self.entry.message.id, self.token)


_CLAIM = text("""
    UPDATE cluster_messages
       SET claim_node = :node, claim_token = :token,
           lease_until = now() + make_interval(secs => CAST(:lease AS double precision))
     WHERE id = (SELECT id FROM cluster_messages
                  WHERE id = :id AND box = 'queue' AND (lease_until IS NULL OR lease_until < now())
                  FOR UPDATE SKIP LOCKED)
    RETURNING meta, state
""")
_RENEW = text("""
    UPDATE cluster_messages SET lease_until = now() + make_interval(secs => CAST(:lease AS double precision))
     WHERE id = :id AND claim_token = :token AND lease_until >= now()
""")
_BUMP = text("""
    INSERT INTO cluster_values (name, version, value) VALUES (:name, 1, CAST(:value AS json))
    ON CONFLICT (name) DO UPDATE SET version = cluster_values.version + 1, value = EXCLUDED.value
""")


class PgQueueStore(PgCaptureStore, ClaimedInBlocks):
    """The delivery queue in the database (`box` "queue"), claimed under leases."""

    box = QUEUE

    def __init__(self, db: Store, tmp_dir: Path, *, node: str, lease: float = 30.0,
                 notifier: Notifier | None = None, listener: Listener | None = None) -> None:
        super().__init__(db, tmp_dir, notifier=notifier)
        self.node = node
        self.lease = lease
        self.holds_location = "the hold rules in the database (table cluster_values)"
        self._commit_listeners: list[Callable[[CapturedMessage], None]] = []
        self._wake_listeners: list[Callable[[str | None], None]] = []
        self._claims: dict[str, str] = {}  # message id -> this process's claim token
        self._claims_lock = threading.Lock()
        self._listener = listener
        if listener is not None:
            listener.subscribe(TOPIC, self._heard)
            listener.on_state(lambda up: self._woken(None) if up else None)

    # ---------------------------------------------------------------- events

    def insert(self, conn: Connection, message: CapturedMessage, data: BinaryIO) -> None:
        super().insert(conn, message, data)
        self.notifier.send(conn, TOPIC, message.id)  # delivered with the commit, never before

    def begin(self, envelope: Envelope) -> PgSpoolWriter:
        """Refused at once while the listener knows the database is gone (451 at DATA, not after it)."""
        if self._listener is not None and not self._listener.up and self._listener.down_since is not None:
            from time import monotonic

            if monotonic() - self._listener.down_since > 2.0:
                raise SpoolUnavailable("the database is unreachable")
        return super().begin(envelope)

    def on_commit(self, listener: Callable[[CapturedMessage], None]) -> None:
        self._commit_listeners.append(listener)

    def on_wake(self, listener: Callable[[str | None], None]) -> None:
        self._wake_listeners.append(listener)

    def committed(self, message: CapturedMessage) -> None:
        for listener in self._commit_listeners:
            try:
                listener(message)
            except Exception:  # noqa: BLE001 - a listener must never fail a commit
                log.exception("queue commit listener failed")
        if self._listener is None:  # no NOTIFY heard: tell this process's worker directly
            self._woken(message.id)

    def _heard(self, payload: str) -> None:
        self._woken(None if payload == ALL else payload)

    def _woken(self, message_id: str | None) -> None:
        for listener in self._wake_listeners:
            try:
                listener(message_id)
            except Exception:  # noqa: BLE001
                log.exception("queue wake listener failed")

    def wake(self) -> None:
        with self._write() as conn:
            conn.execute(_BUMP, {"name": "wakeup", "value": "null"})
            self.notifier.send(conn, TOPIC, ALL)

    def wakeup_stamp(self) -> int:
        return self._version("wakeup") or 0

    def holds_stamp(self) -> int | None:
        return self._version("holds")

    def _version(self, name: str) -> int | None:
        with self._read() as conn:
            return conn.scalar(select(ClusterValueRow.version).where(ClusterValueRow.name == name))

    # ---------------------------------------------------------------- listing

    def entries(self) -> list[QueueEntry]:
        query = (select(QueuedMessageRow.meta, QueuedMessageRow.state).where(QueuedMessageRow.box == QUEUE)
                 .order_by(QueuedMessageRow.received_at, QueuedMessageRow.id))
        with self._read() as conn:
            return [_entry(meta, state) for meta, state in conn.execute(query)]

    def entry(self, message_id: str) -> QueueEntry:
        self._check_id(message_id)
        with self._read() as conn:
            row = conn.execute(select(QueuedMessageRow.meta, QueuedMessageRow.state).where(
                QueuedMessageRow.id == message_id, QueuedMessageRow.box == QUEUE)).first()
        if row is None:
            raise MessageNotFound(message_id)
        return _entry(row[0], row[1])

    def claims(self) -> dict[str, int]:
        """Live claims per node (`smtpgate cluster status`)."""
        query = text("SELECT claim_node, count(*) FROM cluster_messages WHERE box = 'queue' "
                     "AND lease_until >= now() GROUP BY claim_node")
        with self._read() as conn:
            return {str(node): int(count) for node, count in conn.execute(query)}

    # ---------------------------------------------------------------- claims

    def acquire(self, message_id: str, *, wait: bool = True, timeout: float = 120.0) -> PgClaim:
        """Take the message's lease: Busy while another holder's lease runs (after `timeout` when waiting)."""
        import time

        self._check_id(message_id)
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            token = secrets.token_hex(16)
            with self._write() as conn:
                row = conn.execute(_CLAIM, {"node": self.node, "token": token, "lease": self.lease,
                                            "id": message_id}).first()
                exists = row is not None or conn.scalar(select(QueuedMessageRow.id).where(
                    QueuedMessageRow.id == message_id, QueuedMessageRow.box == QUEUE)) is not None
            if row is not None:
                with self._claims_lock:
                    self._claims[message_id] = token
                return PgClaim(self, _entry(row[0], row[1]), token)
            if not exists:
                raise MessageNotFound(message_id)
            if not wait or time.monotonic() >= deadline:
                raise Busy(message_id)
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def renew(self, message_id: str, token: str) -> bool:
        with self._write() as conn:
            return bool(conn.execute(_RENEW, {"id": message_id, "token": token, "lease": self.lease}).rowcount)

    def release(self, message_id: str, token: str) -> None:
        with self._claims_lock:
            if self._claims.get(message_id) == token:
                del self._claims[message_id]
        with self._write() as conn:
            conn.execute(update(QueuedMessageRow).where(
                QueuedMessageRow.id == message_id, QueuedMessageRow.claim_token == token,
            ).values(claim_node=None, claim_token=None, lease_until=None))

    def _held(self, message_id: str) -> Any:
        """The condition that this process still holds the message (when it claimed it)."""
        with self._claims_lock:
            token = self._claims.get(message_id)
        if token is None:
            return QueuedMessageRow.box == QUEUE
        return QueuedMessageRow.claim_token == token

    def save_state(self, message_id: str, state: MessageState) -> None:
        """Under the claim: LeaseLost if the lease lapsed and someone else took it."""
        with self._write() as conn:
            changed = conn.execute(update(QueuedMessageRow).where(
                QueuedMessageRow.id == message_id, self._held(message_id),
            ).values(state=state.to_json())).rowcount
        if not changed:
            self._lost_or_gone(message_id)

    def remove(self, message_id: str) -> None:
        with self._write() as conn:
            changed = conn.execute(delete(QueuedMessageRow).where(
                QueuedMessageRow.id == message_id, self._held(message_id))).rowcount
        if not changed:
            try:
                self._lost_or_gone(message_id)
            except MessageNotFound:
                return  # gone already: what remove() wanted

    def _lost_or_gone(self, message_id: str) -> None:
        self.entry(message_id)  # MessageNotFound when gone
        raise LeaseLost(message_id)

    def delete(self, message_id: str) -> None:
        with self.locked(message_id):
            self.remove(message_id)

    def enqueue(self, envelope: Envelope, data: bytes) -> CapturedMessage:
        writer = self.begin(envelope)
        with writer:
            writer.write(data)
            return writer.commit()

    # ---------------------------------------------------------------- holds

    def hold_rules(self) -> HoldRules:
        with self._read() as conn:
            value = conn.scalar(select(ClusterValueRow.value).where(ClusterValueRow.name == "holds"))
        if not value:
            return HoldRules()
        return HoldRules(
            credentials=frozenset(str(c) for c in value.get("credentials", [])),
            accounts=frozenset(str(a).lower() for a in value.get("accounts", [])),
        )

    def set_hold_rules(self, rules: HoldRules) -> None:
        with self._write() as conn:
            conn.execute(_BUMP, {"name": "holds", "value": json.dumps(rules.to_json())})
            self.notifier.send(conn, TOPIC, ALL)


def _entry(meta: dict[str, Any], state: dict[str, Any] | None) -> QueueEntry:
    return QueueEntry(CapturedMessage.from_json(meta), MessageState.from_json(state) if state else MessageState())
