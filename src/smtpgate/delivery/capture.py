"""Durable on-disk capture of accepted messages (the embedded default delivery).

A 250 reply promises the message is safe, so every message is streamed to a
temp file, fsync'd, and renamed into place (data, then metadata, then a
directory fsync) before the server answers. A crash at any point leaves
either the whole message or nothing visible.

Layout under the store directory (all 0700 / 0600):

    tmp/                      in-flight messages (<id>.eml.tmp, <id>.json.tmp)
    messages/<id>.eml         raw message as received (Received header included)
    messages/<id>.json        metadata; its presence makes the message visible

Leftovers of a crash (tmp files, an .eml without its .json) are removed by
`CaptureStore.remove_stale()`, which the constructor runs with a one-hour
threshold so that a second process opening the store (the CLI) never removes
a message the server is still receiving.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

from smtpgate.delivery.headers import decode_words, header_values

__all__ = [
    "CaptureError",
    "CaptureStore",
    "CapturedMessage",
    "Envelope",
    "MessageNotFound",
    "SpoolWriter",
]

log = logging.getLogger(__name__)

HEADER_LIMIT = 64 * 1024
SUBJECT_LIMIT = 998
STALE_AFTER = timedelta(hours=1)
WRITE_BUFFER = 64 * 1024
META_FORMAT = 1
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[A-Z2-7]{10}$")


class CaptureError(Exception):
    """The capture store cannot do what was asked."""


class MessageNotFound(CaptureError, KeyError):
    """No captured message has this id."""

    def __init__(self, message_id: str) -> None:
        super().__init__(message_id)
        self.message_id = message_id

    def __str__(self) -> str:
        return f"no captured message with id {self.message_id!r}"


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_to: tuple[str, ...]
    credential_id: str | None
    account: str | None
    client_ip: str
    helo: str
    received_at: datetime  # UTC


@dataclass(frozen=True)
class CapturedMessage:
    id: str
    received_at: datetime
    credential_id: str | None
    account: str | None
    mail_from: str
    rcpt_to: tuple[str, ...]
    subject: str
    size: int
    client_ip: str
    helo: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "received_at": self.received_at.isoformat(),
            "credential_id": self.credential_id,
            "account": self.account,
            "mail_from": self.mail_from,
            "rcpt_to": list(self.rcpt_to),
            "subject": self.subject,
            "size": self.size,
            "client_ip": self.client_ip,
            "helo": self.helo,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapturedMessage:
        return cls(
            id=str(data["id"]),
            received_at=datetime.fromisoformat(data["received_at"]).astimezone(timezone.utc),
            credential_id=data.get("credential_id"),
            account=data.get("account"),
            mail_from=str(data["mail_from"]),
            rcpt_to=tuple(data["rcpt_to"]),
            subject=str(data.get("subject", "")),
            size=int(data["size"]),
            client_ip=str(data.get("client_ip", "")),
            helo=str(data.get("helo", "")),
        )


# --------------------------------------------------------------------------- headers


class _HeaderCollector:
    """Keeps the header section (up to the first empty line) while bytes stream by."""

    def __init__(self, limit: int = HEADER_LIMIT) -> None:
        self._limit = limit
        # A leading newline lets a message start with its blank line.
        self._buffer = bytearray(b"\n")
        self._section: bytes | None = None
        self.overflowed = False

    def feed(self, chunk: bytes) -> None:
        if self._section is not None or self.overflowed or not chunk:
            return
        start = max(0, len(self._buffer) - 2)
        self._buffer += chunk[: max(0, self._limit + 3 - len(self._buffer))]
        end = _blank_line(self._buffer, start)
        if end is not None:
            self._section = bytes(self._buffer[1:end])
            self._buffer = bytearray()
        elif len(self._buffer) > self._limit + 1:
            self.overflowed = True
            self._buffer = bytearray()

    def section(self) -> bytes | None:
        """The header block; before the blank line is seen, everything so far."""
        if self._section is not None:
            return self._section
        if self.overflowed:
            return None
        return bytes(self._buffer[1:])


def _blank_line(buffer: bytearray, start: int) -> int | None:
    """Index just past the newline that ends the last header line, if a blank line follows."""
    found = [i for i in (buffer.find(b"\n\r\n", start), buffer.find(b"\n\n", start)) if i >= 0]
    return min(found) + 1 if found else None


def parse_subject(header_section: bytes | None) -> str:
    """The decoded (RFC 2047) Subject, unfolded and bounded; "" when absent."""
    if not header_section:
        return ""
    values = header_values(header_section, "Subject")
    return _clean(decode_words(values[0])) if values else ""


def _clean(text: str) -> str:
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = re.sub(r"\r?\n[ \t]*|\t", " ", text)
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return text.strip()[:SUBJECT_LIMIT]


# --------------------------------------------------------------------------- ids and files


def new_message_id(received_at: datetime) -> str:
    """"20261128T033001Z-<10 base32 chars>": sortable by second, unique by chance."""
    suffix = base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:10]
    return f"{received_at.astimezone(timezone.utc):%Y%m%dT%H%M%S}Z-{suffix}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True)
    os.chmod(directory, 0o700)
    _fsync_dir(directory.parent)


class DirSyncer:
    """Group commit for one directory's fsync: one fsync covers every rename done before it.

    Each committer calls `synced()` after its rename. If a sync is already running it
    waits for the next one (that one started after its rename); otherwise it runs the
    sync itself. So N concurrent commits cost about two directory fsyncs, not N, and no
    commit returns before an fsync that began after its own rename has finished.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cond = threading.Condition()
        self._renamed = 0   # renames announced so far
        self._synced = 0    # renames covered by a finished fsync
        self._syncing = False

    def synced(self) -> None:
        with self._cond:
            self._renamed += 1
            ticket = self._renamed
            while self._synced < ticket:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                upto = self._renamed
                self._cond.release()
                try:
                    _fsync_dir(self.directory)
                except BaseException:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                    raise
                self._cond.acquire()
                self._syncing = False
                self._synced = max(self._synced, upto)
                self._cond.notify_all()


def _open_new(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --------------------------------------------------------------------------- writer


class SpoolWriter:
    """One message being received. Not thread-safe; commit() may run in a worker thread."""

    def __init__(self, store: CaptureStore, envelope: Envelope, message_id: str) -> None:
        self.message_id = message_id
        self.envelope = envelope
        self.size = 0
        self._store = store
        self._headers = _HeaderCollector()
        self._tmp_data = store.tmp_dir / f"{message_id}.eml.tmp"
        self._tmp_meta = store.tmp_dir / f"{message_id}.json.tmp"
        self._file: BinaryIO | None = os.fdopen(_open_new(self._tmp_data), "wb", WRITE_BUFFER)
        self._done = False

    def write(self, chunk: bytes) -> None:
        """Append a chunk; OSError (disk full...) propagates, then call abort()."""
        if self._file is None or self._done:
            raise CaptureError(f"message {self.message_id} is already committed or aborted")
        self._file.write(chunk)
        self.size += len(chunk)
        self._headers.feed(chunk)

    def headers_section(self) -> bytes | None:
        """The raw header block (without the blank line); None if over the size limit.

        Meant for the end of DATA: until the blank line has been seen it
        returns everything written so far (a body-less message is all headers).
        """
        return self._headers.section()

    def commit(self) -> CapturedMessage:
        """Make the message durable and visible; on error nothing is left behind."""
        if self._file is None or self._done:
            raise CaptureError(f"message {self.message_id} is already committed or aborted")
        try:
            message = self._commit()
        except BaseException:
            self.abort()
            raise
        self._done = True
        return message

    def _commit(self) -> CapturedMessage:
        self._close_data(sync=True)
        message = self._metadata()
        fd = _open_new(self._tmp_meta)
        try:
            _write_all(fd, json.dumps({"format": META_FORMAT, **message.to_json()}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        data_path, meta_path = self._store.paths(self.message_id)
        os.rename(self._tmp_data, data_path)
        os.rename(self._tmp_meta, meta_path)
        self._store.dir_syncer.synced()
        self._store.committed(message)
        return message

    def _close_data(self, *, sync: bool) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            if sync:
                file.flush()
                os.fsync(file.fileno())
        finally:
            file.close()

    def _metadata(self) -> CapturedMessage:
        env = self.envelope
        return CapturedMessage(
            id=self.message_id,
            received_at=env.received_at.astimezone(timezone.utc),
            credential_id=env.credential_id,
            account=env.account,
            mail_from=env.mail_from,
            rcpt_to=tuple(env.rcpt_to),
            subject=parse_subject(self._headers.section()),
            size=self.size,
            client_ip=env.client_ip,
            helo=env.helo,
        )

    def abort(self) -> None:
        """Discard the message; safe to call more than once, and after a failed commit."""
        if self._done:
            return
        self._done = True
        try:
            self._close_data(sync=False)
        except OSError:
            pass
        for path in (self._tmp_data, self._tmp_meta, *self._store.paths(self.message_id)):
            path.unlink(missing_ok=True)

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()  # no-op after commit()


# --------------------------------------------------------------------------- store


class CaptureStore:
    """Captured messages in a directory; safe to open from several processes."""

    def __init__(self, directory: Path, *, stale_after: timedelta = STALE_AFTER) -> None:
        self.directory = Path(directory)
        self.tmp_dir = self.directory / "tmp"
        self.messages_dir = self.directory / "messages"
        for path in (self.directory, self.tmp_dir, self.messages_dir):
            _make_dir(path)
        self.dir_syncer = DirSyncer(self.messages_dir)
        self.remove_stale(stale_after)

    def committed(self, message: CapturedMessage) -> None:
        """Called (in the committing thread) once a message is durable; for subclasses."""

    def paths(self, message_id: str) -> tuple[Path, Path]:
        """(<id>.eml, <id>.json) in messages/."""
        return (
            self.messages_dir / f"{message_id}.eml",
            self.messages_dir / f"{message_id}.json",
        )

    def begin(self, envelope: Envelope) -> SpoolWriter:
        received = envelope.received_at
        if received.tzinfo is None:
            raise ValueError("Envelope.received_at must be timezone-aware (UTC)")
        for _ in range(5):
            message_id = new_message_id(received)
            if self.paths(message_id)[1].exists():
                continue
            try:
                return SpoolWriter(self, envelope, message_id)
            except FileExistsError:
                continue
        raise CaptureError("could not allocate a unique message id")

    def list(self, *, limit: int | None = None) -> list[CapturedMessage]:
        """Committed messages, newest first (by received_at, then id)."""
        if limit is not None and limit <= 0:
            return []
        names = sorted((p.stem for p in self.messages_dir.glob("*.json")), reverse=True)
        found: list[CapturedMessage] = []
        for index, message_id in enumerate(names):
            if limit is not None and len(found) >= limit and _second(message_id) != _second(
                names[index - 1]
            ):
                break  # ids sort by second; finish the last second, then stop
            message = self._read_meta(message_id)
            if message is not None:
                found.append(message)
        found.sort(key=lambda m: (m.received_at, m.id), reverse=True)
        return found if limit is None else found[:limit]

    def get(self, message_id: str) -> CapturedMessage:
        self._check_id(message_id)
        message = self._read_meta(message_id)
        if message is None:
            raise MessageNotFound(message_id)
        return message

    def open_raw(self, message_id: str) -> BinaryIO:
        """The stored bytes; the caller closes the file."""
        self._check_id(message_id)
        data_path, meta_path = self.paths(message_id)
        if not meta_path.exists():
            raise MessageNotFound(message_id)
        try:
            return open(data_path, "rb")
        except FileNotFoundError:
            raise MessageNotFound(message_id) from None

    def delete(self, message_id: str) -> None:
        """Remove a message: metadata first, so it is never half visible."""
        self._check_id(message_id)
        data_path, meta_path = self.paths(message_id)
        try:
            meta_path.unlink()
        except FileNotFoundError:
            raise MessageNotFound(message_id) from None
        data_path.unlink(missing_ok=True)

    def remove_stale(self, older_than: timedelta = STALE_AFTER) -> int:
        """Delete crash leftovers older than `older_than`; returns how many files went."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for path in self.tmp_dir.iterdir():
            removed += _unlink_if_older(path, cutoff)
        for path in self.messages_dir.glob("*.eml"):
            if not path.with_suffix(".json").exists():
                removed += _unlink_if_older(path, cutoff)  # renamed, crash before its .json
        for path in self.messages_dir.glob("*.json"):
            if not path.with_suffix(".eml").exists():
                removed += _unlink_if_older(path, float("inf"))  # never valid
        return removed

    def _check_id(self, message_id: str) -> None:
        if not ID_PATTERN.match(message_id):
            raise MessageNotFound(message_id)

    def _read_meta(self, message_id: str) -> CapturedMessage | None:
        try:
            data = json.loads(self.paths(message_id)[1].read_bytes())
            return CapturedMessage.from_json(data)
        except FileNotFoundError:
            return None  # deleted meanwhile
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable capture metadata for %s: %s", message_id, exc)
            return None


def _second(message_id: str) -> str:
    return message_id.split("-", 1)[0]


def _unlink_if_older(path: Path, cutoff: float) -> int:
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
            return 0
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
