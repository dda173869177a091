"""The delivery worker: takes due messages off the queue and sends them on their route.

One asyncio task per attempt, at most `concurrency` at once. The worker knows the queue
by listing it every `poll_interval` (messages accepted by other processes, edits by the
CLI) and is woken at once by the queue (`on_wake`: commits in its own process, and with
the shared queue every node's commits, `queue retry` and `release`, through NOTIFY).
An attempt holds the message's claim from start to finish, renewing it when it is a
lease (the shared queue), so no other process delivers it meanwhile, and records its
outcome before letting go:

    delivered       -> the recipient is done
    temporary (4xx) -> attempts + 1, next attempt after the backoff; after the queue
                       lifetime the recipient is bounced (4.4.7) instead
    permanent (5xx) -> a DSN to the envelope sender is queued (durably) first, then the
                       recipient is marked failed

When no recipient is pending the message is removed. A crash anywhere in between means
the attempt is made again: delivery is at least once, never lost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from smtpgate.delivery.capture import CapturedMessage, Envelope, MessageNotFound
from smtpgate.delivery.dkim import DkimError, DkimSigner
from smtpgate.delivery.dsn import FailedRecipient, build_dsn
from smtpgate.delivery.outcome import Outcome, Outgoing
from smtpgate.delivery.queue import (
    DELIVERED,
    FAILED,
    Busy,
    HoldRules,
    QueueEntry,
    RecipientResult,
)
from smtpgate.delivery.spool import Claim, MessageQueue
from smtpgate.delivery.retry import RetryPolicy
from smtpgate.delivery.routes import RouteTable

__all__ = ["DeliveryWorker"]

log = logging.getLogger("smtpgate.delivery")

PARKED = datetime.max.replace(tzinfo=timezone.utc)  # held: not due until something changes


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DeliveryWorker:
    def __init__(
        self,
        queue: MessageQueue,
        routes: RouteTable,
        *,
        hostname: str,
        signer: DkimSigner | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 20,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = _utcnow,
        observer: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.queue = queue
        self.observer = observer  # (recipient, outcome kind, reply) for each attempt: the reputation watch
        self.routes = routes
        self.hostname = hostname
        self.signer = signer or DkimSigner({})
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.clock = clock
        self._due: dict[str, datetime] = {}
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._rules = HoldRules()
        self._rules_stamp: int | None = None
        self._wakeup_stamp: int | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.delivered = 0
        self.deferred = 0
        self.bounced = 0

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Deliver until stop() is called; then let attempts in flight finish (briefly)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.queue.on_wake(self._woken)
        log.info("delivery worker started (routes: %s)", ", ".join(sorted(self.routes.routes)))
        try:
            while not self._stopping:
                try:
                    await self._scan()
                except OSError as exc:
                    log.error("cannot read the queue: %s", exc)
                self._launch_due()
                await self._sleep()
        finally:
            await self._drain()
            await self.routes.close()

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def _woken(self, message_id: str | None) -> None:
        """From any thread: a message is durable in the queue (an id), or look again (None)."""
        if self._loop is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._arrived, message_id)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _arrived(self, message_id: str | None) -> None:
        if message_id is not None:
            self._due.setdefault(message_id, self.clock())
        if self._wake is not None:
            self._wake.set()

    async def _sleep(self) -> None:
        assert self._wake is not None
        now = self.clock()
        waiting = [d for i, d in self._due.items() if i not in self._inflight and d != PARKED]
        timeout = self.poll_interval
        if waiting and len(self._inflight) < self.concurrency:
            timeout = max(0.0, min(timeout, (min(waiting) - now).total_seconds()))
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass
        self._wake.clear()

    async def _drain(self, grace: float = 10.0) -> None:
        tasks = list(self._inflight.values())
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()  # the attempt is made again after the restart: at least once
        if pending:
            await asyncio.wait(pending, timeout=5)

    # ------------------------------------------------------------------ scanning

    async def _scan(self) -> None:
        rules_stamp = self.queue.holds_stamp()
        wakeup_stamp = self.queue.wakeup_stamp()
        reread_all = rules_stamp != self._rules_stamp or wakeup_stamp != self._wakeup_stamp
        known = set(self._due)
        ids, entries, rules = await asyncio.to_thread(self._scan_sync, known, reread_all)
        self._rules_stamp, self._wakeup_stamp = rules_stamp, wakeup_stamp
        if rules is not None:
            self._rules = rules
        present = set(ids)
        for gone in known - present:
            if gone not in self._inflight:
                self._due.pop(gone, None)
        for message_id, entry in entries.items():
            if message_id not in self._inflight:
                due = self._due_time(entry)
                if due == PARKED and self._due.get(message_id) != PARKED:
                    _log_held(entry.message)
                self._due[message_id] = due

    def _scan_sync(self, known: set[str], reread_all: bool) -> tuple[list[str], dict[str, QueueEntry], HoldRules | None]:
        ids = self.queue.ids()
        rules = self.queue.hold_rules() if reread_all else None
        wanted = [i for i in ids if reread_all or i not in known]
        entries: dict[str, QueueEntry] = {}
        for message_id in wanted:
            try:
                entries[message_id] = self.queue.entry(message_id)
            except MessageNotFound:
                continue
        return ids, entries, rules

    def _due_time(self, entry: QueueEntry) -> datetime:
        if entry.held_by(self._rules):
            return PARKED
        return entry.state.next_attempt or entry.message.received_at

    def _launch_due(self) -> None:
        now = self.clock()
        due = sorted((d, i) for i, d in self._due.items() if d <= now and i not in self._inflight)
        for _, message_id in due:
            if len(self._inflight) >= self.concurrency or self._stopping:
                break
            task = asyncio.get_running_loop().create_task(self._attempt(message_id))
            self._inflight[message_id] = task
            task.add_done_callback(functools.partial(self._finished, message_id))

    def _finished(self, message_id: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(message_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery of %s failed unexpectedly", message_id, exc_info=task.exception())
            self._due[message_id] = self.clock() + timedelta(seconds=max(self.poll_interval, 30))
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ one attempt

    async def _attempt(self, message_id: str) -> None:
        try:
            lock = await asyncio.to_thread(self._acquire, message_id)
        except Busy:  # another process is on it; look again later
            self._due[message_id] = self.clock() + timedelta(seconds=self.poll_interval)
            return
        except MessageNotFound:
            self._due.pop(message_id, None)
            return
        renewing = asyncio.get_running_loop().create_task(self._renew(lock)) if lock.lease_seconds else None
        try:
            await self._attempt_locked(lock.entry)
        finally:
            if renewing is not None:
                renewing.cancel()
            try:
                await asyncio.to_thread(lock.release)
            except OSError as exc:  # the database is gone: the lease lapses on its own
                log.warning("cannot release the claim on %s: %s", message_id, exc)

    async def _renew(self, claim: Claim) -> None:
        """Keep a lease while the attempt runs: renewed at a third of its length, so two
        renewals may fail before it lapses and another node takes the message."""
        assert claim.lease_seconds is not None
        while True:
            await asyncio.sleep(claim.lease_seconds / 3)
            try:
                await asyncio.to_thread(claim.renew)
            except Busy:
                log.error("lost the claim on %s (lease lapsed): another node may deliver it too", claim.entry.message.id)
                return
            except OSError as exc:
                log.warning("cannot renew the claim on %s: %s", claim.entry.message.id, exc)

    def _acquire(self, message_id: str) -> Claim:
        """Lock the message, and pick up hold rules written since the last scan: a
        `queue hold --credential` must stop new mail at once, not a poll later."""
        lock = self.queue.acquire(message_id, wait=False)
        stamp = self.queue.holds_stamp()
        if stamp != self._rules_stamp:
            self._rules = self.queue.hold_rules()
            self._rules_stamp = stamp
        return lock

    async def _attempt_locked(self, entry: QueueEntry) -> None:
        message = entry.message
        now = self.clock()
        if entry.held_by(self._rules):
            if self._due.get(message.id) != PARKED:
                _log_held(message)
            self._due[message.id] = PARKED
            return
        if entry.state.next_attempt is not None and entry.state.next_attempt > now:
            self._due[message.id] = entry.state.next_attempt
            return
        pending = entry.pending
        if not pending:
            await asyncio.to_thread(self.queue.remove, message.id)
            self._due.pop(message.id, None)
            return
        route = self.routes.route_for(message)
        started = time.monotonic()
        try:
            raw = await asyncio.to_thread(self.queue.read_raw, message.id)
            data = await asyncio.to_thread(self.signer.sign, raw, message.mail_from)
        except (OSError, DkimError) as exc:
            log.error("cannot prepare %s for delivery: %s", message.id, exc)
            outcomes = {r: Outcome("temporary", f"451 4.3.0 cannot prepare the message: {exc}") for r in pending}
        else:
            outcomes = await route.deliver(
                Outgoing(message.id, message.mail_from, pending, data, message.credential_id, message.account)
            )
        for rcpt in pending:  # a route that forgot someone: try them again later
            outcomes.setdefault(rcpt, Outcome("temporary", "451 4.3.0 no outcome from the route"))
        log.debug("attempt on %s via %s took %.3fs", message.id, route.name, time.monotonic() - started)
        if self.observer is not None and route.name != "capture":
            for rcpt, outcome in outcomes.items():
                try:
                    self.observer(rcpt, outcome.kind, outcome.reply)
                except Exception:  # noqa: BLE001 - counting never stops delivery
                    log.exception("the delivery outcome observer failed")
        next_due = await asyncio.to_thread(self._record, entry, route.name, outcomes)
        if next_due is None:
            self._due.pop(message.id, None)
        else:
            self._due[message.id] = next_due

    def _record(self, entry: QueueEntry, route: str, outcomes: dict[str, Outcome]) -> datetime | None:
        """Apply an attempt's outcomes durably (in a thread, under the message's lock).

        Returns when the message is due again, or None once it is gone from the queue.
        """
        message, state = entry.message, entry.state
        now = self.clock()
        temporary = {r: o for r, o in outcomes.items() if o.kind == "temporary"}
        expired = bool(temporary) and self.retry.expired(message.received_at, now)
        failed: dict[str, tuple[Outcome, str]] = {
            r: (o, o.status) for r, o in outcomes.items() if o.kind == "permanent"
        }
        if expired:
            lifetime = self.retry.lifetime
            for r, o in temporary.items():
                failed[r] = (Outcome("permanent", f"{o.reply} (gave up after {lifetime} in the queue)", o.remote), "4.4.7")
            temporary = {}
        if failed:
            self._bounce(message, failed, now)
        stamp = now.isoformat()
        for rcpt, outcome in outcomes.items():
            if outcome.kind == "delivered":
                state.recipients[rcpt] = RecipientResult(DELIVERED, outcome.reply, outcome.remote, stamp)
                self.delivered += 1
                log.info("delivered id=%s to=%s via=%s remote=%s reply=%s", message.id, rcpt, route, outcome.remote or "-", outcome.reply)
        for rcpt, (outcome, _) in failed.items():
            state.recipients[rcpt] = RecipientResult(FAILED, outcome.reply, outcome.remote, stamp)
            self.bounced += 1
            log.info("failed id=%s to=%s via=%s remote=%s reply=%s", message.id, rcpt, route, outcome.remote or "-", outcome.reply)
        if temporary:
            state.attempts += 1
            state.last_error = next(iter(temporary.values())).reply
            state.next_attempt = self.retry.next_attempt(state.attempts, message.received_at, now)
            self.deferred += 1
            log.info(
                "deferred id=%s to=%s via=%s attempt=%d next=%s reply=%s",
                message.id, ",".join(temporary), route, state.attempts, state.next_attempt.isoformat(), state.last_error,
            )
        if not entry.pending:
            self.queue.remove(message.id)
            return None
        self.queue.save_state(message.id, state)
        return state.next_attempt or now

    def _bounce(self, message: CapturedMessage, failed: dict[str, tuple[Outcome, str]], now: datetime) -> None:
        if not message.mail_from:
            log.info("not bouncing %s: it has no envelope sender (a bounce itself)", message.id)
            return
        try:
            original = self.queue.read_raw(message.id)
        except (OSError, MessageNotFound):
            original = b""
        dsn = build_dsn(
            hostname=self.hostname,
            queue_id=message.id,
            sender=message.mail_from,
            arrival=message.received_at,
            failed=[FailedRecipient(r, status, o.reply, o.remote) for r, (o, status) in failed.items()],
            original=original,
            now=now,
        )
        stored = self.queue.enqueue(
            Envelope(
                mail_from="",
                rcpt_to=(message.mail_from,),
                credential_id=None,
                account=None,
                client_ip="",
                helo=self.hostname,
                received_at=datetime.now(timezone.utc),
            ),
            dsn,
        )
        log.info("bounce id=%s for=%s to=%s", stored.id, message.id, message.mail_from)


def _log_held(message: CapturedMessage) -> None:
    log.info("held id=%s credential=%s account=%s: not delivered until released",
             message.id, message.credential_id or "-", message.account or "-")


def build_worker(config, queue: MessageQueue, capture) -> DeliveryWorker:
    """The worker as the config describes it: routes, DKIM keys, retry schedule."""
    from smtpgate.delivery.keyring import signer_from
    from smtpgate.delivery.routes import build_routes

    d = config.delivery
    return DeliveryWorker(
        queue,
        build_routes(config, capture),
        hostname=config.hostname,
        signer=signer_from(config),
        retry=RetryPolicy(initial=d.retry_initial, maximum=d.retry_max, jitter=d.retry_jitter, lifetime=d.max_queue_lifetime),
        concurrency=d.concurrency,
        poll_interval=d.poll_interval.total_seconds(),
    )
