"""The queue on disk: durable commits, state, locks between processes, hold rules."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from smtpgate.delivery.capture import DirSyncer, MessageNotFound
from smtpgate.delivery.queue import Busy, HoldRules, MessageState, QueueStore, RecipientResult
from tests.delivery.harness import envelope, message


def test_commit_makes_the_message_visible_with_a_fresh_state(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    stored = queue.enqueue(envelope("alice@example.com", "bob@example.org", "carol@example.net"), message("s"))
    assert queue.ids() == [stored.id]
    entry = queue.entry(stored.id)
    assert entry.state == MessageState()
    assert entry.pending == ("bob@example.org", "carol@example.net")
    assert queue.read_raw(stored.id) == message("s")
    assert (os.stat(queue.path(stored.id)).st_mode & 0o777) == 0o600
    assert not queue.state_dir.joinpath(f"{stored.id}.json").exists()  # nothing but the message file until an attempt


def test_state_round_trips_and_pending_shrinks(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    stored = queue.enqueue(envelope("alice@example.com", "bob@example.org", "carol@example.net"), message())
    when = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    with queue.locked(stored.id) as entry:
        entry.state.attempts = 2
        entry.state.next_attempt = when
        entry.state.recipients["bob@example.org"] = RecipientResult("delivered", "250 ok", "mx", when.isoformat())
        queue.save_state(stored.id, entry.state)
    again = queue.entry(stored.id)
    assert again.state.attempts == 2 and again.state.next_attempt == when
    assert again.pending == ("carol@example.net",)
    assert not any(p.name.endswith(".tmp") for p in queue.state_dir.iterdir())


def test_remove_hides_metadata_first_and_leaves_nothing(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    stored = queue.enqueue(envelope(), message())
    with queue.locked(stored.id):
        queue.save_state(stored.id, MessageState(attempts=1))
        queue.remove(stored.id)
    assert queue.ids() == []
    assert list(queue.messages_dir.iterdir()) == [] and list(queue.state_dir.iterdir()) == []
    with pytest.raises(MessageNotFound):
        queue.entry(stored.id)


def _hold_lock(directory: str, message_id: str, ready, release) -> None:
    queue = QueueStore(Path(directory))
    with queue.locked(message_id):
        ready.set()
        release.wait(20)


def test_a_lock_held_by_another_process_is_busy_and_waiting_works(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    stored = queue.enqueue(envelope(), message())
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_lock, args=(str(tmp_path / "q"), stored.id, ready, release))
    child.start()
    try:
        assert ready.wait(20)
        with pytest.raises(Busy):
            queue.acquire(stored.id, wait=False)
        with pytest.raises(Busy):
            queue.acquire(stored.id, wait=True, timeout=0.2)
        threading.Timer(0.3, release.set).start()
        lock = queue.acquire(stored.id, wait=True, timeout=20)  # waits for the other process
        lock.release()
    finally:
        release.set()
        child.join(20)


def test_a_message_deleted_while_waiting_for_its_lock_is_not_found(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    stored = queue.enqueue(envelope(), message())
    lock = queue.acquire(stored.id)
    threading.Timer(0.2, lambda: (queue.remove(stored.id), lock.release())).start()
    with pytest.raises(MessageNotFound):
        queue.acquire(stored.id, timeout=10)


def test_hold_rules_match_credential_and_account_case_insensitively(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    assert queue.hold_rules() == HoldRules()
    queue.set_hold_rules(HoldRules(credentials=frozenset({"cred_x"}), accounts=frozenset({"mallory@example.com"})))
    rules = queue.hold_rules()
    by_cred = queue.entry(queue.enqueue(envelope(credential_id="cred_x", account="a@example.com"), message()).id)
    by_account = queue.entry(queue.enqueue(envelope(credential_id="cred_y", account="Mallory@Example.com"), message()).id)
    free = queue.entry(queue.enqueue(envelope(credential_id="cred_y", account="a@example.com"), message()).id)
    assert by_cred.held_by(rules) and by_account.held_by(rules) and not free.held_by(rules)


def test_unreadable_hold_rules_hold_everything(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    queue.holds_path.write_text("{not json")
    entry = queue.entry(queue.enqueue(envelope(), message()).id)
    assert entry.held_by(queue.hold_rules())


def test_commit_listener_hears_every_commit(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    heard: list[str] = []
    queue.on_commit(lambda m: heard.append(m.id))
    queue.on_commit(lambda m: 1 / 0)  # a broken listener must not fail the commit
    stored = queue.enqueue(envelope(), message())
    assert heard == [stored.id]


def test_concurrent_commits_share_directory_syncs_and_all_become_visible(tmp_path: Path, monkeypatch) -> None:
    queue = QueueStore(tmp_path / "q")
    calls = []

    import smtpgate.delivery.capture as capture_module

    original_fsync_dir = capture_module._fsync_dir

    def slow_fsync_dir(directory: Path) -> None:
        calls.append(directory)
        time.sleep(0.02)
        original_fsync_dir(directory)

    monkeypatch.setattr(capture_module, "_fsync_dir", slow_fsync_dir)
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda i: queue.enqueue(envelope(), message(f"m{i}")).id, range(64)))
    assert sorted(ids) == queue.ids()
    syncs_of_messages_dir = sum(1 for c in calls if c == queue.messages_dir)
    assert syncs_of_messages_dir < 64  # grouped, yet every commit waited for one


def test_dir_syncer_never_returns_before_a_sync_that_started_after_the_call(tmp_path: Path, monkeypatch) -> None:
    import smtpgate.delivery.capture as capture_module

    events: list[tuple[str, float]] = []

    def fake_fsync(directory: Path) -> None:
        events.append(("start", time.monotonic()))
        time.sleep(0.05)
        events.append(("end", time.monotonic()))

    monkeypatch.setattr(capture_module, "_fsync_dir", fake_fsync)
    syncer = DirSyncer(tmp_path)
    returned: list[tuple[float, float]] = []

    def commit() -> None:
        called = time.monotonic()
        syncer.synced()
        returned.append((called, time.monotonic()))

    threads = [threading.Thread(target=commit) for _ in range(8)]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join()
    starts = [t for kind, t in events if kind == "start"]
    ends = [t for kind, t in events if kind == "end"]
    for called, done in returned:
        assert any(s >= called and e <= done for s, e in zip(starts, ends, strict=True)), "returned before a covering sync"


def test_stale_state_files_of_gone_messages_are_removed(tmp_path: Path) -> None:
    queue = QueueStore(tmp_path / "q")
    orphan = queue.state_dir / "20260101T000000Z-AAAAAAAAAA.json"
    orphan.write_text("{}")
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    assert queue.remove_stale(timedelta(hours=1)) >= 1
    assert not orphan.exists()
