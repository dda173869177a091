"""The audit writer: events in from the event loop, rows out to the database in batches.

`record()` costs the session one append to a deque: no lock, no thread woken. A thread
wakes every `flush_interval`, takes everything that queued up, writes the JSON log lines
(one per event) and the rows (in transactions of up to `max_batch`), runs the anomaly
rules over them and hands their alerts to the dispatcher. The same thread prunes what is
older than the retention. So an accepted message never waits for an audit write, a slow
database slows the audit, not the mail, and the event loop never hands the interpreter
to the writer per event (waking a thread per event cost a quarter of the throughput).

If the database stays unreachable the queue is bounded: past `max_queue` waiting events
new ones go to the JSON log only, and `dropped` counts the rows lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from smtpgate.audit.alerts import AlertDispatcher
from smtpgate.audit.anomaly import AnomalyDetector
from smtpgate.audit.events import AuditEvent
from smtpgate.audit.store import AuditStore
from smtpgate.logformat import json_line

log = logging.getLogger("smtpgate.audit")
errors = logging.getLogger("smtpgate.audit_writer")

Classify = Callable[[str], tuple[str, str]]
"""remote ip -> (network, source) as the guard counts them."""


class AuditRecorder:
    def __init__(
        self,
        store: AuditStore,
        classify: Classify,
        *,
        json_log: bool = True,
        detector: AnomalyDetector | None = None,
        dispatcher: AlertDispatcher | None = None,
        retention: timedelta = timedelta(days=90),
        prune_interval: timedelta = timedelta(hours=1),
        also_prune: Sequence[Callable[[datetime], int]] = (),
        flush_interval: float = 0.25,
        max_batch: int = 1000,
        max_queue: int = 100_000,
    ) -> None:
        self._store = store
        self._classify = classify
        self.json_log = json_log
        self.detector = detector
        self.dispatcher = dispatcher
        self.retention = retention
        self.prune_interval = prune_interval.total_seconds()
        self._also_prune = list(also_prune)
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._pending: deque[AuditEvent] = deque()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._done = threading.Condition()
        self._submitted = 0   # only the recording thread (the event loop) adds to it
        self._written = 0
        self.dropped = 0
        self._next_prune = 0.0
        self._last_error_log = 0.0

    # -------------------------------------------------------------- the loop side

    def record(self, event: AuditEvent) -> None:
        """Queue the event for the log and the database; never blocks, never wakes a thread."""
        if len(self._pending) >= self.max_queue:
            self.dropped += 1
            if self.json_log:
                log.info(_line(event))
            return
        self._pending.append(event)
        self._submitted += 1

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="smtpgate-audit", daemon=True)
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        target = self._submitted
        self._wake.set()
        with self._done:
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return False
                self._done.wait(remaining)
        return True

    def close(self, timeout: float = 10.0, *, wait_for_alerts: bool = True) -> None:
        """Write what is queued; with wait_for_alerts=False (a server stopping), abandon webhook retries."""
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None
        if self.dispatcher is not None:
            self.dispatcher.close(wait=wait_for_alerts)

    # ------------------------------------------------------------ the thread side

    def _run(self) -> None:
        self._next_prune = time.monotonic()  # prune once at start, then every prune_interval
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping
            while self._pending:
                batch: list[AuditEvent] = []
                while self._pending and len(batch) < self.max_batch:
                    batch.append(self._pending.popleft())
                self._write(batch)
            if stopping:
                return
            if time.monotonic() >= self._next_prune:
                self._prune()

    def _write(self, batch: list[AuditEvent]) -> None:
        try:
            if self.json_log:  # one JSON object per line, in one write
                log.info("\n".join(_line(event) for event in batch))
            classified = [(event, *self._classify(event.remote_ip)) for event in batch]
            ids = self._insert(classified)
            if ids is not None and self.detector is not None:
                self._alerts([(i, e, network) for i, (e, network, _) in zip(ids, classified, strict=True)])
        finally:
            with self._done:
                self._written += len(batch)
                self._done.notify_all()

    def _insert(self, rows: list[tuple[AuditEvent, str, str]]) -> list[int] | None:
        for attempt in range(3):
            try:
                return self._store.insert(rows)
            except Exception as exc:  # noqa: BLE001 - the database may come back
                self._error(f"cannot write {len(rows)} audit events (attempt {attempt + 1}): {type(exc).__name__}: {_first_line(exc)}")
                time.sleep(0.5 * (attempt + 1))
        with self._done:
            self.dropped += len(rows)
        return None

    def _alerts(self, stored: list[tuple[int, AuditEvent, str]]) -> None:
        assert self.detector is not None
        try:
            alerts = self.detector.examine(stored)
            for alert in alerts:
                if self.dispatcher is not None:
                    self.dispatcher.raise_alert(alert)
        except Exception as exc:  # noqa: BLE001 - a failing rule must not stop the audit
            self._error(f"anomaly rules failed: {type(exc).__name__}: {_first_line(exc)}")

    def _prune(self) -> None:
        self._next_prune = time.monotonic() + self.prune_interval
        before = datetime.now(UTC) - self.retention
        try:
            removed = self._store.prune(before)
            for prune in self._also_prune:
                prune(before)
            if removed:
                errors.info("pruned %d audit events older than %s", removed, before.date())
        except Exception as exc:  # noqa: BLE001
            self._error(f"pruning failed: {type(exc).__name__}: {_first_line(exc)}")

    def _error(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            errors.error(message)


def _first_line(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _line(event: AuditEvent) -> str:
    return json_line(event.to_json())
