"""PostgreSQL LISTEN/NOTIFY: one listening connection per process, shared by every topic.

A cluster's nodes tell each other two things at once: a message arrived or a wake-up was
asked for (the queue), and a credential changed (the login caches). Both ride on NOTIFY,
sent inside the transaction that makes the change, so a notification is delivered if and
only if the change committed, and never before it is visible.

Channel names carry a digest of the database and schema, so two installations sharing a
PostgreSQL server (or two test runs in their own schemas) never hear each other.

The listener is a thread that keeps one autocommit connection with TCP keepalives and a
user timeout (a silent network failure is noticed within seconds, not hours), pings it
every second, and reconnects after a failure. Whoever subscribes is told when it goes
down and when it comes back (`on_state`): notifications sent meanwhile are lost, so a
cache must forget everything when the listener comes back, and the queue rescans.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from smtpgate.store.db import Store

log = logging.getLogger("smtpgate.cluster")

PING_INTERVAL = 1.0
RECONNECT_DELAY = 0.5
_KEEPALIVE = {
    "connect_timeout": 3, "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
    "keepalives_count": 2, "tcp_user_timeout": 3000,
}


def libpq_url(url: str) -> str:
    """SQLAlchemy's `postgresql+psycopg://` URL as libpq reads it."""
    return "postgresql://" + url.split("://", 1)[1]


def channel_name(namespace: str, topic: str) -> str:
    """`sg_<digest>_<topic>`: a NOTIFY channel of this database and schema only."""
    return f"sg_{hashlib.sha256(namespace.encode()).hexdigest()[:16]}_{topic}"


NAMESPACE_SQL = "SELECT current_database() || '.' || current_schema()"
"""What tells this installation's channels apart: database and schema."""


class Notifier:
    """Sends NOTIFY inside a transaction (SQLAlchemy connection or session)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._namespace: str | None = None
        self._lock = threading.Lock()

    def channel(self, topic: str) -> str:
        with self._lock:
            if self._namespace is None:
                with self._store.engine.connect() as conn:
                    self._namespace = str(conn.execute(text(NAMESPACE_SQL)).scalar())
            return channel_name(self._namespace, topic)

    def send(self, db: Any, topic: str, payload: str) -> None:
        """Queued in `db`'s transaction: delivered when (and only if) it commits."""
        db.execute(text("SELECT pg_notify(:channel, :payload)"),
                   {"channel": self.channel(topic), "payload": payload})


Callback = Callable[[str], None]
StateCallback = Callable[[bool], None]


class Listener:
    """The process's LISTEN connection (a daemon thread), started on first subscription."""

    def __init__(self, url: str, *, name: str = "smtpgate-listen") -> None:
        self._url = libpq_url(url)
        self._name = name
        self._topics: dict[str, list[Callback]] = {}
        self._states: list[StateCallback] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._up = threading.Event()
        self.down_since: float | None = time.monotonic()  # None while up
        self.alive_at = 0.0  # monotonic time the connection last answered
        self.heard = 0

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def subscribe(self, topic: str, callback: Callback) -> None:
        with self._lock:
            self._topics.setdefault(topic, []).append(callback)
        self.start()

    def on_state(self, callback: StateCallback) -> None:
        with self._lock:
            self._states.append(callback)

    def wait_up(self, timeout: float) -> bool:
        return self._up.wait(timeout)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=3)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, **_KEEPALIVE) as conn:  # type: ignore[arg-type]
                    self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - any failure: down, then reconnect
                if self._stopping.is_set():
                    break
                self._set_state(False, exc)
            self._stopping.wait(RECONNECT_DELAY)
        self._set_state(False, None)

    def _listen(self, conn: Any) -> None:
        channels = channel_name(str(conn.execute(NAMESPACE_SQL).fetchone()[0]), "")
        with self._lock:
            topics = dict(self._topics)
        by_channel = {channels + topic: topic for topic in topics}
        for channel in by_channel:
            conn.execute(f'LISTEN "{channel}"')
        self.alive_at = time.monotonic()
        self._set_state(True, None)
        while not self._stopping.is_set():
            for note in conn.notifies(timeout=PING_INTERVAL, stop_after=64):
                self.heard += 1
                topic = by_channel.get(note.channel)
                with self._lock:
                    callbacks = list(self._topics.get(topic or "", ()))
                for callback in callbacks:
                    try:
                        callback(note.payload)
                    except Exception:  # noqa: BLE001 - one subscriber never stops the others
                        log.exception("a NOTIFY subscriber failed")
            with self._lock:
                added = [t for t in self._topics if channels + t not in by_channel]
            for topic in added:
                by_channel[channels + topic] = topic
                conn.execute(f'LISTEN "{channels + topic}"')
            conn.execute("SELECT 1")  # a dead connection shows here, within the TCP user timeout
            self.alive_at = time.monotonic()

    def _set_state(self, up: bool, exc: BaseException | None) -> None:
        if up == self._up.is_set() and not (up is False and self.down_since is None):
            return
        if up:
            self.down_since = None
            log.info("cluster notifications: listening")
        else:
            self._up.clear()
            if self.down_since is None:
                self.down_since = time.monotonic()
                if exc is not None:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    log.warning("cluster notifications lost (%s): caches fall back to their short lifetime", reason)
        with self._lock:
            states = list(self._states)
        for callback in states:
            try:
                callback(up)
            except Exception:  # noqa: BLE001
                log.exception("a NOTIFY state subscriber failed")
        if up:  # only once every subscriber has caught up (caches emptied, queue rescanned)
            self._up.set()
