"""The composition root: builds the store and the services from one Config.

Both faces (the CLI and the server) get their parts here, so there is exactly one way a
credential service, a store or a capture store comes into being.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING

from smtpgate.config import Config
from smtpgate.credentials import CredentialService
from smtpgate.store import Store, open_store

if TYPE_CHECKING:
    from smtpgate.audit import AuditRecorder, AuditStore
    from smtpgate.audit.store import Alert
    from smtpgate.cluster.registry import NodeRegistry
    from smtpgate.cluster.sealed import SealedFiles
    from smtpgate.credentials.tokens import TokenService
    from smtpgate.deliverability.foresight import Foresight
    from smtpgate.deliverability.reputation import OutcomeWatch, Watch
    from smtpgate.delivery import CaptureBox, MessageQueue, Spool
    from smtpgate.delivery.worker import DeliveryWorker
    from smtpgate.guard import Guard, GuardBackend
    from smtpgate.guard.slots import ConnectionSlots
    from smtpgate.store.notify import Listener, Notifier


class Runtime:
    def __init__(self, config: Config, *, guard_channel: socket.socket | None = None, node: str = "",
                 serving: bool = False) -> None:
        """`guard_channel`: a worker's socket to the guard host in its parent (shared backend);
        `node`: this machine's server instance, the same in all its workers (Redis slots);
        `serving`: a server process (in a cluster it listens for the other nodes' changes)."""
        self.config = config
        self.guard_channel = guard_channel
        self.node = node
        self.serving = serving

    # ---------------------------------------------------------------- the cluster

    @property
    def clustered(self) -> bool:
        """`[cluster] enabled`: queue, capture, keys and cache invalidation shared in PostgreSQL."""
        return self.config.cluster.enabled

    @cached_property
    def node_name(self) -> str:
        return self.config.cluster.node_name or socket.gethostname()

    @cached_property
    def node_registry(self) -> NodeRegistry:
        """This node's heartbeats (`smtpgate cluster status` reads them)."""
        from smtpgate.cluster.registry import NodeRegistry

        cluster = self.config.cluster
        address = cluster.address or f"{self.node_name}:{self.config.smtp.submission.rpartition(':')[2]}"
        return NodeRegistry(self.store, node=self.node_name, address=address,
                            interval=cluster.heartbeat_interval.total_seconds())

    @cached_property
    def notifier(self) -> Notifier:
        from smtpgate.store.notify import Notifier

        return Notifier(self.store)

    @cached_property
    def listener(self) -> Listener | None:
        """The NOTIFY listener of a serving cluster node (the CLI only sends)."""
        if not (self.clustered and self.serving):
            return None
        from smtpgate.store.notify import Listener

        return Listener(self.config.cluster.listen_url or self.config.database_url)

    @cached_property
    def store(self) -> Store:
        store = open_store(self.config.database_url)
        if self.clustered:  # the cluster's keys before anything reads them (docs/cluster.md)
            from smtpgate.cluster.sealed import open_sealed

            sealed = open_sealed(store, self.config)
            sealed.sync()
            self.__dict__["sealed_files"] = sealed
        return store

    @cached_property
    def sealed_files(self) -> SealedFiles | None:
        """The keys every node shares, mirrored from the database (None outside a cluster)."""
        self.store
        return self.__dict__.get("sealed_files")

    @cached_property
    def credentials(self) -> CredentialService:
        channel = None
        if self.clustered:
            from smtpgate.credentials.cluster_channel import NotifyChannel

            channel = NotifyChannel(self.store, self.notifier, self.listener,
                                    fallback_ttl=self.config.cluster.cache_fallback_ttl.total_seconds())
        return CredentialService.from_config(self.config, self.store, hashing_pool=self.hashing_pool, channel=channel)

    @cached_property
    def hashing_pool(self) -> ThreadPoolExecutor:
        """argon2 checks, bounded machine-wide and at a lower priority (smtpgate.pools)."""
        from smtpgate.pools import hashing_pool

        return hashing_pool(self.config.path("locks"))

    @cached_property
    def disk_pool(self) -> ThreadPoolExecutor:
        """Spool commits (fsync), apart from hashing and the database."""
        from smtpgate.pools import disk_pool

        return disk_pool()

    @cached_property
    def tokens(self) -> TokenService:
        """Service accounts, the built-in token issuer and token checks (owned by the credential service)."""
        tokens = self.credentials.tokens
        assert tokens is not None  # from_config always builds it
        return tokens

    @cached_property
    def capture(self) -> CaptureBox:
        if self.clustered:
            from smtpgate.delivery.pg_queue import PgCaptureStore

            return PgCaptureStore(self.store, self.config.path("spool-tmp"), notifier=self.notifier)
        from smtpgate.delivery.capture import CaptureStore

        return CaptureStore(self.config.capture_dir)

    @cached_property
    def queue(self) -> MessageQueue:
        """The file queue, or in a cluster the PostgreSQL one (claims under leases, NOTIFY wake-ups)."""
        if self.clustered:
            from smtpgate.delivery.pg_queue import PgQueueStore

            return PgQueueStore(self.store, self.config.path("spool-tmp"), node=self.node_name,
                                lease=self.config.cluster.lease.total_seconds(),
                                notifier=self.notifier, listener=self.listener)
        from smtpgate.delivery.queue import QueueStore

        return QueueStore(self.config.path(self.config.delivery.queue_dir))

    @cached_property
    def spool(self) -> Spool:
        """Where the SMTP server puts accepted messages: the capture store when capture is
        the only route, otherwise the delivery queue (which captures through its route)."""
        return self.queue if self.config.delivery.uses_queue else self.capture

    def delivery_worker(self) -> DeliveryWorker | None:
        """The worker that drains the queue, or None when nothing is ever queued."""
        if not self.config.delivery.uses_queue:
            return None
        from smtpgate.delivery.worker import build_worker

        worker = build_worker(self.config, self.queue, self.capture)
        worker.observer = self.outcome_watch.record
        return worker

    @cached_property
    def outcome_watch(self) -> OutcomeWatch:
        """Delivery outcomes per destination domain, and the alert on a sudden rise of failures."""
        from smtpgate.deliverability.reputation import OutcomeWatch

        r = self.config.reputation
        return OutcomeWatch(window=r.outcome_window.total_seconds(), factor=r.rise_factor, minimum=r.rise_min,
                            alert=self._raise_alert)

    def reputation_watch(self) -> Watch:
        """Blocklist checks and the DKIM key switch, on the process that delivers."""
        from smtpgate.deliverability.reputation import Watch

        return Watch(self.config, alert=self._raise_alert)

    def _raise_alert(self, alert: Alert) -> object:
        dispatcher = self.audit.dispatcher
        return dispatcher.raise_alert(alert) if dispatcher is not None else None

    @cached_property
    def foresight(self) -> Foresight | None:
        """The DMARC check at the end of DATA, or None when nothing leaves or policy says not to look."""
        if not self.config.delivery.uses_queue or self.config.deliverability.misaligned == "accept":
            return None
        from smtpgate.deliverability.foresight import Foresight

        return Foresight(self.config, alert=self._raise_alert)

    # ---------------------------------------------------------------- the watchtower

    @cached_property
    def guard_backend(self) -> GuardBackend:
        """[guard] backend: shared by the machine's workers (the parent holds it), Redis (every
        node), or in-memory (this process). A process without a parent's channel (one worker,
        the CLI) holds the shared state itself. Redis connects on first use."""
        cfg = self.config.guard
        if cfg.backend == "redis":
            from smtpgate.guard.redis_backend import RedisBackend

            lease = max(3.0, 5 * cfg.sync_interval.total_seconds())
            return RedisBackend(cfg.redis_url, prefix=cfg.redis_prefix, node=self.node, lease=lease)
        if cfg.backend == "shared" and self.guard_channel is not None:
            from smtpgate.guard.shared import SharedBackend

            return SharedBackend(self.guard_channel)
        from smtpgate.guard.memory import MemoryBackend

        return MemoryBackend()

    @cached_property
    def guard(self) -> Guard:
        import time

        from smtpgate.guard import Guard, GuardSettings
        from smtpgate.guard.bans import BanBook

        return Guard(
            self.guard_backend,
            GuardSettings.from_config(self.config.guard),
            book=BanBook(self.store, time.time),
            known_good=self.audit_store.known_good,
        )

    @cached_property
    def connection_slots(self) -> ConnectionSlots:
        """`max_connections` and `max_connections_per_ip`, counted in the guard backend."""
        from smtpgate.guard.slots import ConnectionSlots

        smtp = self.config.smtp
        return ConnectionSlots(self.guard_backend, max_total=smtp.max_connections, max_per_ip=smtp.max_connections_per_ip)

    @cached_property
    def audit_store(self) -> AuditStore:
        from smtpgate.audit import AuditStore

        return AuditStore(self.store)

    @cached_property
    def audit(self) -> AuditRecorder:
        """The audit writer with its anomaly rules and alert sinks (the server starts its thread)."""
        from smtpgate.audit import (
            AlertDispatcher,
            AlertSettings,
            AnomalyDetector,
            AuditRecorder,
            EmailSink,
            WebhookSink,
        )
        from smtpgate.guard import source_key
        from smtpgate.guard.networks import parse_source

        cfg, alerts = self.config, self.config.alerts
        guard = self.guard

        def classify(ip: str) -> tuple[str, str]:
            source = parse_source(ip)
            return ("", "") if source is None else (guard.network_of(source), source_key(source))

        webhook = None
        if alerts.webhook_url:
            webhook = WebhookSink(
                alerts.webhook_url,
                cfg.read_secret_file(alerts.webhook_secret_file, "alert webhook secret"),
                attempts=alerts.webhook_attempts,
                backoff=alerts.webhook_backoff.total_seconds(),
                timeout=alerts.webhook_timeout.total_seconds(),
                server=cfg.hostname,
            )
        email = None
        if alerts.email_owner:
            email = EmailSink(
                self.spool, self._owner_address,
                sender=alerts.email_from or f"postmaster@{cfg.hostname}", hostname=cfg.hostname,
            )
        detector = AnomalyDetector(
            self.audit_store,
            AlertSettings(
                failure_burst=alerts.failure_burst,
                failure_window=cfg.guard.failure_window.total_seconds(),
                volume_factor=alerts.volume_factor,
                volume_min_messages=alerts.volume_min_messages,
                device_volume_min_messages=alerts.device_volume_min_messages,
                volume_baseline=alerts.volume_baseline,
            ),
        )
        return AuditRecorder(
            self.audit_store,
            classify,
            json_log=cfg.audit.json_log,
            detector=detector,
            dispatcher=AlertDispatcher(self.audit_store, webhook=webhook, email=email),
            retention=cfg.audit.retention,
            prune_interval=cfg.audit.prune_interval,
            also_prune=[*([guard.book.prune] if guard.book is not None else []), self.tokens.prune],
        )

    def _owner_address(self, login: str) -> str | None:
        """Where an account's alerts go: its owner when that is an address, else the login itself."""
        try:
            account = self.credentials.get_account(login)
        except Exception:  # noqa: BLE001 - no such account (an unknown login was tried)
            return None
        owner = account.owner.strip()
        return owner if "@" in owner else account.login

    def close_after_schema(self) -> None:
        """Create or upgrade the schema (what `init` does), then close."""
        self.store
        self.close()

    def close(self) -> None:
        if "credentials" in self.__dict__:
            try:
                self.credentials.flush_usage()  # the last second's logins
            except Exception:  # noqa: BLE001 - the database may be gone; counts are not decisions
                pass
        if "audit" in self.__dict__:
            self.audit.close()
        for pool in ("hashing_pool", "disk_pool"):
            if pool in self.__dict__:
                self.__dict__[pool].shutdown(wait=False)
        sealed = self.__dict__.get("sealed_files")
        if sealed is not None:
            try:
                sealed.push()  # a key this process made or changed (dkim rotate, upstream set-password)
            except Exception:  # noqa: BLE001 - pushed by the next heartbeat of a server instead
                pass
        listener = self.__dict__.get("listener")
        if listener is not None:
            listener.stop()
        if "store" in self.__dict__:
            self.store.dispose()
