"""Durable on-disk capture of accepted messages (the embedded default delivery).

A 250 reply promises the message is safe, so every message is streamed to one
temp file, its metadata appended, the file fsync'd and renamed into place, and
the directory fsync'd (shared by the commits in flight at the same moment)
before the server answers. A crash at any point leaves either the whole
message or nothing visible.

Layout under the store directory (all 0700 / 0600):

    tmp/<id>.msg.tmp          in-flight messages
    messages/<id>.msg         one file per message: the raw bytes as received
                              (Received header included), then the metadata
                              as JSON, then a fixed-size footer giving the
                              metadata's length (see `_footer`)

One file instead of a data file and a metadata file halves the fsyncs, creates
and renames per message. Stores written before (`<id>.eml` + `<id>.json`) are
converted when opened (`_convert_legacy`).

Leftovers of a crash (tmp files) are removed by `CaptureStore.remove_stale()`,
which the constructor runs with a one-hour threshold so that a second process
opening the store (the CLI) never removes a message the server is still
receiving.
"""

from __future__ import annotations

import base64
import builtins
import fcntl
import io
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
SUFFIX = ".msg"
FOOTER_MAGIC = b"\nSMTPGATE-META "
FOOTER_SIZE = len(FOOTER_MAGIC) + 11  # magic, 10 digits of metadata length, newline
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


def _footer(meta_length: int) -> bytes:
    """What ends every message file: how many bytes of JSON metadata precede it."""
    return FOOTER_MAGIC + b"%010d\n" % meta_length


def _read_trailer(fd: int) -> dict[str, Any]:
    """The metadata of a message file (ValueError if the file is not one)."""
    total = os.fstat(fd).st_size
    if total < FOOTER_SIZE:
        raise ValueError("too short for a message file")
    footer = os.pread(fd, FOOTER_SIZE, total - FOOTER_SIZE)
    if not footer.startswith(FOOTER_MAGIC) or not footer.endswith(b"\n"):
        raise ValueError("no metadata footer")
    length = int(footer[len(FOOTER_MAGIC) : -1])
    if length > total - FOOTER_SIZE:
        raise ValueError("metadata length out of range")
    data: dict[str, Any] = json.loads(os.pread(fd, length, total - FOOTER_SIZE - length))
    if int(data.get("size", -1)) != total - FOOTER_SIZE - length:
        raise ValueError("metadata size does not match the file")
    return data


class _Slice(io.RawIOBase):
    """The first `size` bytes of an open file: a message's raw bytes without its metadata."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd, self._left = fd, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        data = os.read(self._fd, min(len(view), self._left))
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def message_metadata(message_id: str, env: Envelope, size: int, header_section: bytes | None) -> CapturedMessage:
    """What is kept about a message beside its bytes (every spool, files or database)."""
    return CapturedMessage(
        id=message_id,
        received_at=env.received_at.astimezone(timezone.utc),
        credential_id=env.credential_id,
        account=env.account,
        mail_from=env.mail_from,
        rcpt_to=tuple(env.rcpt_to),
        subject=parse_subject(header_section),
        size=size,
        client_ip=env.client_ip,
        helo=env.helo,
    )


# --------------------------------------------------------------------------- writer


class SpoolWriter:
    """One message being received. Not thread-safe; commit() may run in a worker thread."""

    def __init__(self, store: CaptureStore, envelope: Envelope, message_id: str) -> None:
        self.message_id = message_id
        self.envelope = envelope
        self.size = 0
        self._store = store
        self._headers = _HeaderCollector()
        self._tmp = store.tmp_dir / f"{message_id}{SUFFIX}.tmp"
        self._file: BinaryIO | None = os.fdopen(_open_new(self._tmp), "wb", WRITE_BUFFER)
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
        """Metadata appended, one fsync, one rename, then the (shared) directory fsync."""
        file, self._file = self._file, None
        assert file is not None
        try:
            message = self._metadata()
            meta = json.dumps({"format": META_FORMAT, **message.to_json()}).encode()
            file.write(meta + _footer(len(meta)))
            file.flush()
            os.fsync(file.fileno())
        finally:
            file.close()
        os.rename(self._tmp, self._store.path(self.message_id))
        self._store.dir_syncer.synced()
        self._store.committed(message)
        return message

    def _close_data(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()

    def _metadata(self) -> CapturedMessage:
        return message_metadata(self.message_id, self.envelope, self.size, self._headers.section())

    def abort(self) -> None:
        """Discard the message; safe to call more than once, and after a failed commit."""
        if self._done:
            return
        self._done = True
        try:
            self._close_data()
        except OSError:
            pass
        self._tmp.unlink(missing_ok=True)
        self._store.path(self.message_id).unlink(missing_ok=True)

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
        self._convert_legacy()
        self.remove_stale(stale_after)

    def committed(self, message: CapturedMessage) -> None:
        """Called (in the committing thread) once a message is durable; for subclasses."""

    def path(self, message_id: str) -> Path:
        """messages/<id>.msg: the message's one file."""
        return self.messages_dir / f"{message_id}{SUFFIX}"

    def begin(self, envelope: Envelope) -> SpoolWriter:
        received = envelope.received_at
        if received.tzinfo is None:
            raise ValueError("Envelope.received_at must be timezone-aware (UTC)")
        for _ in range(5):
            message_id = new_message_id(received)
            if self.path(message_id).exists():
                continue
            try:
                return SpoolWriter(self, envelope, message_id)
            except FileExistsError:
                continue
        raise CaptureError("could not allocate a unique message id")

    def ids(self) -> list[str]:
        """Ids of visible messages, oldest first."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.messages_dir.glob(f"*{SUFFIX}"))

    def list(self, *, limit: int | None = None) -> list[CapturedMessage]:
        """Committed messages, newest first (by received_at, then id)."""
        if limit is not None and limit <= 0:
            return []
        names = self.ids()[::-1]
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
        """The stored bytes (without the metadata); the caller closes the file."""
        self._check_id(message_id)
        try:
            fd = os.open(self.path(message_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MessageNotFound(message_id) from None
        try:
            size = int(_read_trailer(fd)["size"])
        except (ValueError, KeyError, TypeError):
            os.close(fd)
            raise MessageNotFound(message_id) from None
        return io.BufferedReader(_Slice(fd, size))  # type: ignore[return-value]

    def delete(self, message_id: str) -> None:
        """Remove a message (one unlink: it is never half visible)."""
        self._check_id(message_id)
        try:
            self.path(message_id).unlink()
        except FileNotFoundError:
            raise MessageNotFound(message_id) from None

    def purge(self, *, older_than: timedelta | None = None, now: datetime | None = None) -> builtins.list[str]:
        """Delete the messages received more than `older_than` ago (None: every message);
        the ids deleted, oldest first."""
        cutoff = None if older_than is None else (now or datetime.now(timezone.utc)) - older_than
        gone: list[str] = []
        for message_id in self.ids():
            if cutoff is not None:
                message = self._read_meta(message_id)
                if message is None or message.received_at > cutoff:
                    continue
            try:
                self.delete(message_id)
            except MessageNotFound:  # deleted meanwhile (another purge, a delivery)
                continue
            gone.append(message_id)
        return gone

    def remove_stale(self, older_than: timedelta = STALE_AFTER) -> int:
        """Delete crash leftovers older than `older_than`; returns how many files went."""
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        for path in self.tmp_dir.iterdir():
            removed += _unlink_if_older(path, cutoff)
        for path in self.messages_dir.glob("*.eml"):  # a legacy data file whose metadata never came
            if not path.with_suffix(".json").exists():
                removed += _unlink_if_older(path, cutoff)
        return removed

    def _convert_legacy(self) -> None:
        """Turn each `<id>.eml` + `<id>.json` of an older store into one `<id>.msg`.

        Under the flock a running delivery attempt holds on the `.json` (skipped when busy,
        done on the next open); the new file is durable before the old pair goes, so a crash
        in between leaves both, and the next open removes the pair (the `.msg` wins).
        """
        for meta_path in self.messages_dir.glob("*.json"):
            message_id = meta_path.stem
            data_path, target = meta_path.with_suffix(".eml"), self.path(message_id)
            try:
                fd = os.open(meta_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if os.fstat(fd).st_nlink == 0:
                    continue
                if not target.exists():
                    if not data_path.exists():
                        meta_path.unlink(missing_ok=True)  # metadata without data: never valid
                        continue
                    self._write_converted(message_id, meta_path, data_path)
                meta_path.unlink(missing_ok=True)
                data_path.unlink(missing_ok=True)
            except (OSError, ValueError) as exc:
                log.warning("cannot convert stored message %s to the one-file layout: %s", message_id, exc)
            finally:
                os.close(fd)

    def _write_converted(self, message_id: str, meta_path: Path, data_path: Path) -> None:
        meta = json.loads(meta_path.read_bytes())
        tmp = self.tmp_dir / f"{message_id}{SUFFIX}.convert"
        tmp.unlink(missing_ok=True)
        with open(data_path, "rb") as src, os.fdopen(_open_new(tmp), "wb", WRITE_BUFFER) as dst:
            while chunk := src.read(WRITE_BUFFER):
                dst.write(chunk)
            meta["size"] = dst.tell()
            encoded = json.dumps(meta).encode()
            dst.write(encoded + _footer(len(encoded)))
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, self.path(message_id))
        self.dir_syncer.synced()

    def _check_id(self, message_id: str) -> None:
        if not ID_PATTERN.match(message_id):
            raise MessageNotFound(message_id)

    def _read_meta(self, message_id: str) -> CapturedMessage | None:
        try:
            fd = os.open(self.path(message_id), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None  # deleted meanwhile
        try:
            return CapturedMessage.from_json(_read_trailer(fd))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable stored message %s: %s", message_id, exc)
            return None
        finally:
            os.close(fd)


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
