"""The capture store: durable, streamed, all-or-nothing message storage."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpgate.delivery.capture import (
    CaptureError,
    CapturedMessage,
    FOOTER_SIZE,
    CaptureStore,
    Envelope,
    MessageNotFound,
    SpoolWriter,
)

T0 = datetime(2026, 11, 28, 3, 30, 1, 250000, tzinfo=timezone.utc)
MESSAGE = (
    b"Received: from client.example ([192.0.2.1]) by mail.example.com\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n"
    b" Berlin\r\n"
    b"\r\n"
    b"Hello.\r\n"
)


def envelope(received_at: datetime = T0, **changes: object) -> Envelope:
    fields: dict[str, object] = {
        "mail_from": "alice@example.com",
        "rcpt_to": ("bob@example.org", "carol@example.net"),
        "credential_id": "cred_1",
        "account": "acme",
        "client_ip": "192.0.2.1",
        "helo": "client.example",
        "received_at": received_at,
    }
    fields.update(changes)
    return Envelope(**fields)  # type: ignore[arg-type]


def store_files(store: CaptureStore) -> list[str]:
    return sorted(
        str(p.relative_to(store.directory)) for p in store.directory.rglob("*") if p.is_file()
    )


def capture(store: CaptureStore, data: bytes = MESSAGE, **changes: object) -> CapturedMessage:
    writer = store.begin(envelope(**changes))
    writer.write(data)
    return writer.commit()


def header_block(data: bytes) -> bytes:
    """Reference header section: everything before the first empty line."""
    match = re.search(rb"(?:^|\n)(\r?\n)", data)
    if match is None:
        return data
    return data[: match.start(1)]


@pytest.fixture
def store(tmp_path: Path) -> CaptureStore:
    return CaptureStore(tmp_path / "capture")


# --------------------------------------------------------------------------- streaming


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=4000).map(lambda body: MESSAGE + body)
    | st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=6000), max_size=12),
)
def test_chunked_writes_store_identical_bytes(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    with tempfile.TemporaryDirectory() as tmp:
        store = CaptureStore(Path(tmp))
        writer = store.begin(envelope())
        for start, end in zip(points, points[1:]):
            writer.write(data[start:end])
        assert writer.headers_section() == header_block(data)
        message = writer.commit()
        with store.open_raw(message.id) as raw:
            assert raw.read() == data
        assert message.size == writer.size == len(data)
        assert store.get(message.id).size == len(data)


def test_headers_section_split_exactly_at_the_blank_line(store: CaptureStore) -> None:
    writer = store.begin(envelope())
    for piece in (b"From: a@example.com\r", b"\n\r", b"\n", b"body\r\n\r\nmore\r\n"):
        writer.write(piece)
    assert writer.headers_section() == b"From: a@example.com\r\n"
    writer.abort()


def test_headers_section_of_body_less_and_header_less_messages(store: CaptureStore) -> None:
    writer = store.begin(envelope())
    writer.write(b"Subject: only headers\r\n")
    assert writer.headers_section() == b"Subject: only headers\r\n"
    assert writer.commit().subject == "only headers"
    writer = store.begin(envelope())
    writer.write(b"\r\nno headers at all\r\n")
    assert writer.headers_section() == b""
    assert writer.commit().subject == ""


def test_oversized_header_section_is_none(store: CaptureStore) -> None:
    writer = store.begin(envelope())
    for _ in range(100):
        writer.write(b"X-Filler: " + b"a" * 1000 + b"\r\n")
    writer.write(b"Subject: late\r\n\r\nbody\r\n")
    assert writer.headers_section() is None
    message = writer.commit()
    assert message.subject == ""
    assert message.size == 100 * 1012 + len(b"Subject: late\r\n\r\nbody\r\n")


# --------------------------------------------------------------------------- metadata


def test_subject_encoded_words_are_decoded(store: CaptureStore) -> None:
    assert capture(store).subject == "Grüße aus Berlin"


@pytest.mark.parametrize(
    ("header", "subject"),
    [
        (b"Subject: =?iso-8859-1?q?caf=E9?=", "café"),
        (b"Subject: =?UTF-8?B?5pel5pys6Kqe?=", "日本語"),
        (b"Subject: plain words", "plain words"),
        ("Subject: raw utf-8 ñ".encode(), "raw utf-8 ñ"),
        (b"Subject: broken \xff bytes", "broken \ufffd bytes"),
        (b"X-Other: no subject", ""),
    ],
)
def test_subject_variants(store: CaptureStore, header: bytes, subject: str) -> None:
    assert capture(store, header + b"\r\n\r\nbody\r\n").subject == subject


def test_metadata_file_and_round_trip(store: CaptureStore) -> None:
    message = capture(store)
    path = store.path(message.id)
    assert path.name == f"{message.id}.msg" and store_files(store) == [f"messages/{message.id}.msg"]
    raw = path.read_bytes()
    footer = raw[-FOOTER_SIZE:]
    assert footer.startswith(b"\nSMTPGATE-META ") and footer.endswith(b"\n")
    meta_length = int(footer[len(b"\nSMTPGATE-META "):-1])
    assert raw[: len(MESSAGE)] == MESSAGE and len(raw) == len(MESSAGE) + meta_length + FOOTER_SIZE
    stored = json.loads(raw[len(MESSAGE) : len(MESSAGE) + meta_length])
    assert stored["format"] == 1
    assert {k: v for k, v in stored.items() if k != "format"} == message.to_json()
    assert message.to_json() == {
        "id": message.id,
        "received_at": "2026-11-28T03:30:01.250000+00:00",
        "credential_id": "cred_1",
        "account": "acme",
        "mail_from": "alice@example.com",
        "rcpt_to": ["bob@example.org", "carol@example.net"],
        "subject": "Grüße aus Berlin",
        "size": len(MESSAGE),
        "client_ip": "192.0.2.1",
        "helo": "client.example",
    }
    assert CapturedMessage.from_json(message.to_json()) == message
    assert store.get(message.id) == message


def test_message_id_format(store: CaptureStore) -> None:
    writer = store.begin(envelope())
    assert re.fullmatch(r"20261128T033001Z-[A-Z2-7]{10}", writer.message_id)
    other = store.begin(envelope())
    assert other.message_id != writer.message_id
    writer.abort()
    other.abort()


def test_naive_received_at_is_refused(store: CaptureStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.begin(envelope(received_at=datetime(2026, 1, 1)))


def test_permissions(store: CaptureStore) -> None:
    message = capture(store)
    for directory in (store.directory, store.tmp_dir, store.messages_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path(message.id).stat().st_mode) == 0o600


# --------------------------------------------------------------------------- visibility


def test_uncommitted_writer_is_not_listed(store: CaptureStore) -> None:
    writer = store.begin(envelope())
    writer.write(MESSAGE)
    assert store.list() == []
    with pytest.raises(MessageNotFound):
        store.get(writer.message_id)
    message = writer.commit()
    assert store.list() == [message]


def test_abort_leaves_nothing_and_is_idempotent(store: CaptureStore) -> None:
    writer = store.begin(envelope())
    writer.write(MESSAGE)
    writer.abort()
    writer.abort()
    assert store_files(store) == []
    assert store.list() == []
    with pytest.raises(CaptureError):
        writer.write(b"more")
    with pytest.raises(CaptureError):
        writer.commit()


def test_abort_after_commit_keeps_the_message(store: CaptureStore) -> None:
    with store.begin(envelope()) as writer:
        writer.write(MESSAGE)
        message = writer.commit()
    writer.abort()
    assert store.list() == [message]


def test_context_manager_aborts_on_error(store: CaptureStore) -> None:
    with pytest.raises(RuntimeError), store.begin(envelope()) as writer:
        writer.write(MESSAGE)
        raise RuntimeError("client went away")
    assert store_files(store) == []


def test_list_is_newest_first_and_limited(store: CaptureStore) -> None:
    times = [T0 + timedelta(seconds=s, microseconds=u) for s, u in
             [(5, 0), (0, 0), (9, 0), (5, 900000), (5, 100)]]
    ids = {capture(store, received_at=t).id: t for t in times}
    listed = store.list()
    assert [m.received_at for m in listed] == sorted(times, reverse=True)
    assert [m.id for m in listed] == sorted(ids, key=ids.__getitem__, reverse=True)
    assert store.list(limit=2) == listed[:2]
    assert store.list(limit=3) == listed[:3]
    assert store.list(limit=0) == []
    assert store.list(limit=100) == listed


def test_get_open_raw_delete(store: CaptureStore) -> None:
    message = capture(store)
    with store.open_raw(message.id) as raw:
        assert raw.read() == MESSAGE
    store.delete(message.id)
    assert store.list() == [] and store_files(store) == []
    for call in (store.get, store.open_raw, store.delete):
        with pytest.raises(MessageNotFound) as err:
            call(message.id)
        assert isinstance(err.value, KeyError)
        assert message.id in str(err.value)


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "", "20261128T033001Z-AAAAAAAAAA/../x"])
def test_invalid_ids_are_not_found(store: CaptureStore, bad_id: str) -> None:
    with pytest.raises(MessageNotFound):
        store.open_raw(bad_id)


# --------------------------------------------------------------------------- crash safety


def test_crash_mid_message_leaves_nothing_visible(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    writer = store.begin(envelope())
    writer.write(MESSAGE)
    writer._file.flush()  # the bytes reached the tmp file, then the process died
    reopened = CaptureStore(tmp_path)
    assert reopened.list() == []
    assert store_files(reopened) == [f"tmp/{writer.message_id}.msg.tmp"]  # young: maybe in flight


def test_stale_leftovers_are_removed(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    kept = capture(store)
    writer = store.begin(envelope())
    writer.write(MESSAGE)
    writer._file.flush()
    old = time.time() - 7200
    os.utime(store.tmp_dir / f"{writer.message_id}.msg.tmp", (old, old))
    CaptureStore(tmp_path)
    assert store_files(store) == [f"messages/{kept.id}.msg"]


def test_a_file_without_its_metadata_is_not_a_message(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    kept = capture(store)
    (store.messages_dir / "20261128T033001Z-AAAAAAAAAA.msg").write_bytes(MESSAGE)  # placed by hand, no footer
    assert [m.id for m in store.list()] == [kept.id]
    with pytest.raises(MessageNotFound):
        store.open_raw("20261128T033001Z-AAAAAAAAAA")


def test_a_store_of_the_two_file_layout_is_converted_when_opened(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path)
    message = capture(store)
    meta = {"format": 1, **message.to_json()}
    legacy_id = "20261128T033001Z-CCCCCCCCCC"
    meta["id"] = legacy_id
    store.path(message.id).unlink()
    (store.messages_dir / f"{legacy_id}.eml").write_bytes(MESSAGE)
    (store.messages_dir / f"{legacy_id}.json").write_text(json.dumps(meta))
    orphan_json = store.messages_dir / "20261128T033001Z-BBBBBBBBBB.json"
    orphan_json.write_text(json.dumps(meta))  # metadata without data: never valid
    orphan_eml = store.messages_dir / "20261128T033001Z-DDDDDDDDDD.eml"
    orphan_eml.write_bytes(MESSAGE)  # data whose metadata never came, old
    old = time.time() - 7200
    os.utime(orphan_eml, (old, old))
    reopened = CaptureStore(tmp_path)
    assert store_files(reopened) == [f"messages/{legacy_id}.msg"]
    converted = reopened.get(legacy_id)
    assert converted.size == len(MESSAGE) and converted.subject == message.subject
    with reopened.open_raw(legacy_id) as raw:
        assert raw.read() == MESSAGE


def test_commit_is_one_fsync_one_rename_then_the_directory(
    store: CaptureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        events.append("fsync dir" if stat.S_ISDIR(mode) else f"fsync file {os.fstat(fd).st_size}")
        real_fsync(fd)

    def rename(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        events.append(f"rename {Path(dst).suffix}")
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    writer = store.begin(envelope())
    writer.write(MESSAGE)
    assert events == []
    message = writer.commit()
    assert events == [f"fsync file {store.path(message.id).stat().st_size}", "rename .msg", "fsync dir"]


def test_failed_commit_leaves_nothing(store: CaptureStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rename = os.rename

    def rename(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        if str(dst).endswith(".msg"):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    writer = store.begin(envelope())
    writer.write(MESSAGE)
    with pytest.raises(OSError, match="No space"):
        writer.commit()
    assert store_files(store) == [] and store.list() == []


def test_commit_runs_in_a_worker_thread(store: CaptureStore) -> None:
    async def receive() -> CapturedMessage:
        writer: SpoolWriter = store.begin(envelope())
        for line in MESSAGE.splitlines(keepends=True):
            writer.write(line)
        return await asyncio.to_thread(writer.commit)

    message = asyncio.run(receive())
    assert store.list() == [message]
