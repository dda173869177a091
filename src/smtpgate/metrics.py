"""Prometheus metrics of the server (prometheus-client); `/metrics` is served by `admin.metrics`.

A neutral module: the wire (smtp), the guard and the admin face all record or read here.

Correct with `serve --workers N`: every worker is its own process with its own counters,
and any worker may answer a scrape. prometheus-client's multiprocess mode solves exactly
that: each process writes its values to memory-mapped files in one directory, and the
collector that answers `/metrics` adds up the files of all processes. `run_server` calls
`enable_multiprocess()` before forking, with `<data dir>/metrics`, emptied at every server
start (stale files of an earlier run would be added in); when a worker dies the supervisor
calls `worker_exited()` so its "live" gauges stop counting. Outside the server (tests that
build the app in-process) the metrics live in a plain registry of this process.

Metric objects are created lazily by `metrics()`, after the mode is chosen, so a value is
never created in the wrong mode.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_registry = CollectorRegistry()


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.connections = Counter(
            "smtpgate_connections", "Connections by listener and outcome (accepted, banned, limit, shutdown).",
            ["listener", "result"], registry=r,
        )
        self.open_connections = Gauge(
            "smtpgate_connections_open", "Connections open now.", ["listener"],
            registry=r, multiprocess_mode="livesum",
        )
        self.tls_handshakes = Counter(
            "smtpgate_tls_handshakes", "TLS handshakes (implicit TLS and STARTTLS) by outcome and version.",
            ["listener", "result", "version"], registry=r,
        )
        self.tls_seconds = Histogram(
            "smtpgate_tls_handshake_seconds", "STARTTLS handshake duration.", ["listener"],
            buckets=_LATENCY, registry=r,
        )
        self.auth_attempts = Counter(
            "smtpgate_auth_attempts", "AUTH attempts by mechanism, result and reason.",
            ["mechanism", "result", "reason"], registry=r,
        )
        self.auth_seconds = Histogram(
            "smtpgate_auth_seconds", "AUTH duration (failures include the constant-time padding).",
            ["mechanism", "result"], buckets=_LATENCY, registry=r,
        )
        self.messages = Counter(
            "smtpgate_messages", "Message decisions: accepted, or rejected with a reason.",
            ["result", "reason"], registry=r,
        )
        self.recipients = Counter("smtpgate_recipients", "Recipients of accepted messages.", registry=r)
        self.message_bytes = Counter("smtpgate_message_bytes", "Octets of accepted messages.", registry=r)
        self.message_seconds = Histogram(
            "smtpgate_message_commit_seconds", "From the end of DATA to the reply (checks, quota, fsync).",
            buckets=_LATENCY, registry=r,
        )
        self.bans = Counter("smtpgate_bans", "Bans made by this server, by scope (address, network).", ["scope"], registry=r)
        self.quota_hits = Counter(
            "smtpgate_quota_hits", "Mail refused by a quota.", ["kind", "scope", "period"], registry=r,
        )
        self.alerts = Counter("smtpgate_alerts", "Alerts raised, by rule.", ["rule"], registry=r)
        self.delivery_outcomes = Counter(
            "smtpgate_delivery_outcomes",
            "Delivery outcomes per destination domain: delivered, throttled (421/451), deferred (other 4xx), failed (5xx).",
            ["domain", "result"], registry=r,
        )
        self.dnsbl_listed = Gauge(
            "smtpgate_dnsbl_listed", "1 when the outbound address is listed on the DNS blocklist, else 0.",
            ["address", "zone"], registry=r, multiprocess_mode="livemax",
        )


_metrics: Metrics | None = None


def metrics() -> Metrics:
    global _metrics
    if _metrics is None:
        _metrics = Metrics(_registry)
    return _metrics


def enable_multiprocess(directory: Path) -> None:
    """Switch this process (and the workers it forks) to multiprocess mode, with a clean directory."""
    global _metrics
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()
    _metrics = None


def worker_exited(pid: int) -> None:
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def exposition() -> bytes:
    """The text exposition of every process's metrics."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    metrics()
    return generate_latest(_registry)
