"""The PostgreSQL queue and capture store against a real PostgreSQL (a schema per test).

Two stores with different node names stand for two nodes: what one claims the other
cannot, a lease that is not renewed lapses and the message goes to the other, a commit
is visible to any other connection when commit() returns, and NOTIFY wakes the other
node's worker.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from smtpgate.delivery.capture import Envelope, MessageNotFound
from smtpgate.delivery.pg_queue import LeaseLost, PgCaptureStore, PgQueueStore, SpoolUnavailable
from smtpgate.delivery.queue import Busy, HoldRules, MessageState
from smtpgate.delivery.routes import CaptureRoute, RouteTable
from smtpgate.delivery.worker import DeliveryWorker
from smtpgate.store import Store, open_store
from smtpgate.store.notify import Listener
from tests.conftest import PG_URL, _plain, _postgres_available, need


def envelope(**changes: object) -> Envelope:
    values: dict[str, object] = dict(mail_from="a@example.com", rcpt_to=("b@example.net",), credential_id="cred_1",
                                     account="a@example.com", client_ip="192.0.2.1", helo="client",
                                     received_at=datetime.now(timezone.utc))
    values.update(changes)
    return Envelope(**values)  # type: ignore[arg-type]


MESSAGE = b"Subject: hello\r\nFrom: a@example.com\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def schema_url() -> Iterator[str]:
    """One schema for the module (migrations run once); each test starts with empty tables."""
    need(_postgres_available() is None, _postgres_available() or "")
    name = f"sgtest_{secrets.token_hex(4)}"
    with psycopg.connect(_plain(PG_URL), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield f"{PG_URL}?options=-csearch_path%3D{name}"
    with psycopg.connect(_plain(PG_URL), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg_schema_url(schema_url: str) -> str:
    return schema_url


@pytest.fixture(scope="module")
def module_db(schema_url: str) -> Iterator[Store]:
    store = open_store(schema_url)
    yield store
    store.dispose()


@pytest.fixture
def db(module_db: Store) -> Store:
    with module_db.engine.begin() as conn:
        conn.execute(text("TRUNCATE cluster_messages, cluster_message_chunks, cluster_values"))
    return module_db


def node(db: Store, tmp_path: Path, name: str, *, lease: float = 30.0, listener: Listener | None = None) -> PgQueueStore:
    return PgQueueStore(db, tmp_path / name, node=name, lease=lease, listener=listener)


def test_commit_is_in_postgresql_before_it_returns(db: Store, tmp_path: Path, pg_schema_url: str) -> None:
    queue = node(db, tmp_path, "a")
    writer = queue.begin(envelope())
    big = b"x" * (3 * (1 << 20) + 17)  # over a chunk and over the in-memory limit
    writer.write(MESSAGE)
    writer.write(big)
    stored = writer.commit()
    # Another connection, outside the store's pool, sees the whole message at once.
    with psycopg.connect(pg_schema_url.replace("postgresql+psycopg", "postgresql")) as conn:
        size = conn.execute("SELECT size FROM cluster_messages WHERE id = %s", (stored.id,)).fetchone()
        data = b"".join(row[0] for row in conn.execute(
            "SELECT data FROM cluster_message_chunks WHERE message_id = %s ORDER BY seq", (stored.id,)))
    assert size == (len(MESSAGE) + len(big),)
    assert data == MESSAGE + big
    assert stored.subject == "hello"
    assert queue.read_raw(stored.id) == MESSAGE + big


def test_an_aborted_or_failed_message_leaves_nothing(db: Store, tmp_path: Path) -> None:
    queue = node(db, tmp_path, "a")
    writer = queue.begin(envelope())
    writer.write(MESSAGE)
    writer.abort()
    assert queue.ids() == []
    unreachable = open_store("postgresql+psycopg://postgres@127.0.0.1:1/test", upgrade=False)
    broken = node(unreachable, tmp_path, "b")
    writer = broken.begin(envelope())
    writer.write(MESSAGE)
    with pytest.raises(SpoolUnavailable):  # an OSError: the session answers 451 4.3.0
        writer.commit()
    assert queue.ids() == []


def test_two_claimers_never_hold_the_same_message(db: Store, tmp_path: Path) -> None:
    a, b = node(db, tmp_path, "a"), node(db, tmp_path, "b")
    first = a.enqueue(envelope(), MESSAGE)
    claim = a.acquire(first.id, wait=False)
    with pytest.raises(Busy):
        b.acquire(first.id, wait=False)
    assert a.claims() == {"a": 1}
    claim.release()
    b.acquire(first.id, wait=False).release()

    ids = [a.enqueue(envelope(), MESSAGE).id for _ in range(30)]
    held: dict[str, str] = {}
    overlaps: list[str] = []
    lock = threading.Lock()

    def claimer(queue: PgQueueStore) -> None:
        for message_id in ids:
            try:
                got = queue.acquire(message_id, wait=False)
            except (Busy, MessageNotFound):  # the other has it, or had it and removed it
                continue
            with lock:
                if message_id in held:
                    overlaps.append(message_id)
                held[message_id] = queue.node
            time.sleep(0.002)
            with lock:
                del held[message_id]
            queue.remove(message_id)
            got.release()

    threads = [threading.Thread(target=claimer, args=(q,)) for q in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert set(a.ids()) == {first.id}  # every one of the 30 was taken once and removed


def test_a_lease_not_renewed_lapses_and_the_message_goes_to_another_node(db: Store, tmp_path: Path) -> None:
    a, b = node(db, tmp_path, "a", lease=1.0), node(db, tmp_path, "b", lease=1.0)
    stored = a.enqueue(envelope(), MESSAGE)
    dead = a.acquire(stored.id, wait=False)  # node a "dies": it never renews
    with pytest.raises(Busy):
        b.acquire(stored.id, wait=False)
    started = time.monotonic()
    taken = b.acquire(stored.id, wait=True, timeout=5)
    assert 0.5 < time.monotonic() - started < 3
    assert a.claims() == {"b": 1}
    with pytest.raises(LeaseLost):  # the old holder cannot overwrite the new holder's record
        dead.renew()
    with pytest.raises(LeaseLost):
        a.save_state(stored.id, MessageState(attempts=9))
    b.save_state(stored.id, MessageState(attempts=1))
    taken.release()
    assert b.entry(stored.id).state.attempts == 1


def test_a_renewed_lease_holds(db: Store, tmp_path: Path) -> None:
    a, b = node(db, tmp_path, "a", lease=1.0), node(db, tmp_path, "b", lease=1.0)
    stored = a.enqueue(envelope(), MESSAGE)
    claim = a.acquire(stored.id, wait=False)
    for _ in range(4):
        time.sleep(0.4)
        claim.renew()
        with pytest.raises(Busy):
            b.acquire(stored.id, wait=False)
    claim.release()


def test_notify_wakes_the_other_node(db: Store, tmp_path: Path, pg_schema_url: str) -> None:
    listener = Listener(pg_schema_url)
    try:
        b = node(db, tmp_path, "b", listener=listener)
        heard: list[tuple[str | None, float]] = []
        arrived = threading.Event()
        b.on_wake(lambda message_id: (heard.append((message_id, time.monotonic())), arrived.set()))
        assert listener.wait_up(5)
        heard.clear()
        arrived.clear()
        a = node(db, tmp_path, "a")  # no listener: it only sends
        sent = time.monotonic()
        stored = a.enqueue(envelope(), MESSAGE)
        assert arrived.wait(2)
        assert heard[-1][0] == stored.id and heard[-1][1] - sent < 1.0
        arrived.clear()
        a.wake()
        assert arrived.wait(2) and heard[-1][0] is None
    finally:
        listener.stop()


def test_hold_rules_and_stamps_are_shared(db: Store, tmp_path: Path) -> None:
    a, b = node(db, tmp_path, "a"), node(db, tmp_path, "b")
    assert b.holds_stamp() is None and b.wakeup_stamp() == 0
    a.set_hold_rules(HoldRules(credentials=frozenset({"cred_1"}), accounts=frozenset({"x@example.com"})))
    a.wake()
    assert b.hold_rules().credentials == {"cred_1"} and b.holds_stamp() == 1 and b.wakeup_stamp() == 1
    entry = b.entry(a.enqueue(envelope(), MESSAGE).id)
    assert entry.held_by(b.hold_rules())
    b.delete(entry.message.id)
    with pytest.raises(MessageNotFound):
        a.entry(entry.message.id)


def test_capture_box_lists_reads_and_purges(db: Store, tmp_path: Path) -> None:
    capture = PgCaptureStore(db, tmp_path / "c")
    queue = node(db, tmp_path, "a")
    queue.enqueue(envelope(), MESSAGE)  # another box: never listed as captured
    old = capture.begin(envelope(received_at=datetime.now(timezone.utc) - timedelta(days=2)))
    old.write(MESSAGE)
    old_id = old.commit().id
    new = capture.begin(envelope())
    new.write(MESSAGE)
    new_id = new.commit().id
    assert [m.id for m in capture.list()] == [new_id, old_id]
    assert capture.get(new_id).subject == "hello"
    assert capture.open_raw(new_id).read() == MESSAGE
    assert capture.purge(older_than=timedelta(days=1)) == [old_id]
    with pytest.raises(MessageNotFound):
        capture.get(old_id)
    assert len(queue.ids()) == 1


def test_the_worker_delivers_from_the_shared_queue_and_renews_its_lease(db: Store, tmp_path: Path) -> None:
    """The delivery worker, unchanged, on the PostgreSQL queue: capture route, lease renewed
    while a slow route runs (1 s lease, 2.5 s attempt), nothing delivered twice."""
    queue = node(db, tmp_path, "a", lease=1.0)
    other = node(db, tmp_path, "b", lease=1.0)
    capture = PgCaptureStore(db, tmp_path / "c")

    class SlowCapture(CaptureRoute):
        async def deliver(self, message):  # type: ignore[no-untyped-def]
            await asyncio.sleep(2.5)
            return await super().deliver(message)

    stored = queue.enqueue(envelope(), MESSAGE)
    worker = DeliveryWorker(queue, RouteTable("capture", {}, {"capture": SlowCapture(capture)}),
                            hostname="mx.test", poll_interval=0.2)

    async def run() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.6)  # past the lease: only renewal keeps it
        with pytest.raises(Busy):
            await asyncio.to_thread(other.acquire, stored.id, wait=False)
        for _ in range(100):
            if not queue.ids():
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await task

    asyncio.run(run())
    assert queue.ids() == [] and worker.delivered == 1
    assert [m.rcpt_to for m in capture.list()] == [("b@example.net",)]
