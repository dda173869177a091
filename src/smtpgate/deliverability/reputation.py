"""Reputation watched: blocklist listings of the outbound addresses, and sudden delivery failures.

`BlocklistWatch.check()` asks every `[reputation] dnsbl` zone about every outbound address
and raises an alert when an address gets listed or delisted (the state is kept in the data
dir, `reputation.json`, so a restart does not raise them again); `smtpgate_dnsbl_listed`
shows the current state on /metrics. `OutcomeWatch` counts delivery outcomes per destination
domain (`smtpgate_delivery_outcomes`) and alerts when a window of `outcome_window` has at
least `rise_min` failures (5xx, and 421/451 throttling) at `rise_factor` times the domain's
usual failure rate. `Watch` runs both, and the DKIM key switch, on the delivering process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from smtpgate.audit.store import Alert
from smtpgate.config import Config
from smtpgate.deliverability.dns import resolver_for
from smtpgate.metrics import metrics
from smtpgate.mailauth import dnsbl
from smtpgate.mailauth.resolver import DnsTrouble, Resolver

__all__ = ["BlocklistWatch", "OutcomeWatch", "Watch"]

log = logging.getLogger("smtpgate.reputation")

AlertSink = Callable[[Alert], object]
MAX_DOMAINS = 500           # label values kept on /metrics; the rest count as "other"
BASELINE_WINDOWS = 24
BASELINE_FLOOR = 0.02       # a domain never seen failing is taken as failing 2 % of the time


def _now() -> datetime:
    return datetime.now(UTC)


class BlocklistWatch:
    def __init__(self, addresses: list[str], zones: list[str], resolver: Resolver, state_file: Path,
                 alert: AlertSink | None = None, clock: Callable[[], datetime] = _now) -> None:
        self.addresses, self.zones = addresses, zones
        self.resolver = resolver
        self.state_file = state_file
        self.alert = alert
        self.clock = clock

    def _state(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, dict[str, str]]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_file)

    def check(self) -> list[dnsbl.Listing]:
        """One round over every address and zone; alerts on each change. Blocking: call it in a thread."""
        state = self._state()
        found = []
        for address in self.addresses:
            for zone in self.zones:
                try:
                    listing = dnsbl.check(self.resolver, address, zone)
                except DnsTrouble as exc:
                    log.info("blocklist %s not asked about %s: %s", zone, address, exc)
                    continue
                found.append(listing)
                listed = listing.status == "listed"
                metrics().dnsbl_listed.labels(address, zone).set(1 if listed else 0)
                key = f"{address} {zone}"
                before = state.get(key, {}).get("status", "clear")
                if listing.status == "refused" or (before == "listed") == listed:
                    continue
                now = self.clock()
                state[key] = {"status": "listed" if listed else "clear", "since": now.isoformat()}
                self._raise(listing, now)
        self._save(state)
        return found

    def _raise(self, listing: dnsbl.Listing, now: datetime) -> None:
        listed = listing.status == "listed"
        summary = (f"{listing.address} is listed on {listing.zone} ({', '.join(listing.codes)})"
                   + (f": {listing.reason}" if listing.reason else "")
                   + "; receivers using it refuse this server's mail" if listed
                   else f"{listing.address} is no longer listed on {listing.zone}")
        log.warning("%s", summary)
        if self.alert is None:
            return
        self.alert(Alert(
            rule="dnsbl-listed" if listed else "dnsbl-delisted",
            severity="critical" if listed else "warning",
            summary=summary,
            # the store keeps 255 characters: what makes the key unique comes before a long zone name
            dedupe_key=f"dnsbl:{now.isoformat()}:{'listed' if listed else 'delisted'}:{listing.address}:{listing.zone}",
            time=now, remote_ip=listing.address,
            details={"address": listing.address, "zone": listing.zone, "codes": list(listing.codes), "reason": listing.reason},
        ))


def outcome_class(kind: str, reply: str) -> str:
    """delivered, throttled (421/451), deferred (other temporary), failed (permanent)."""
    if kind == "delivered":
        return "delivered"
    if kind == "permanent":
        return "failed"
    if reply[3:4] != " " or reply[:3] not in ("421", "451"):
        return "deferred"
    # 4.3.x and 4.4.x 451s are our own (network, DNS, a key we could not read), not the receiver's throttling
    return "deferred" if reply[:3] == "451" and reply[4:8].startswith(("4.3.", "4.4.")) else "throttled"


class OutcomeWatch:
    """Per destination domain: outcomes on /metrics, and an alert when failures suddenly rise."""

    def __init__(self, *, window: float, factor: float, minimum: int, alert: AlertSink | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.window, self.factor, self.minimum = window, factor, minimum
        self.alert = alert
        self.clock = clock
        self._windows: dict[str, deque[list[int]]] = defaultdict(lambda: deque(maxlen=BASELINE_WINDOWS + 1))
        self._current: dict[str, int] = {}
        self._alerted: set[tuple[str, int]] = set()
        self._labels: set[str] = set()
        self._lock = threading.Lock()

    def record(self, recipient: str, kind: str, reply: str) -> None:
        domain = recipient.rpartition("@")[2].lower().rstrip(".")
        result = outcome_class(kind, reply)
        label = domain if domain in self._labels or len(self._labels) < MAX_DOMAINS else "other"
        self._labels.add(label)
        metrics().delivery_outcomes.labels(label, result).inc()
        failed = result in ("failed", "throttled")
        index = int(self.clock() // self.window)
        with self._lock:
            windows = self._windows[domain]
            if self._current.get(domain) != index:
                self._current[domain] = index
                windows.append([0, 0])
            windows[-1][0] += 1
            windows[-1][1] += failed
            total, failures = windows[-1]
            earlier = list(windows)[:-1]
            if not failed or failures < self.minimum or (domain, index) in self._alerted:
                return
            seen = sum(w[0] for w in earlier)
            baseline = max(BASELINE_FLOOR, sum(w[1] for w in earlier) / seen) if seen else BASELINE_FLOOR
            if failures / total < self.factor * baseline:
                return
            self._alerted.add((domain, index))
        self._raise(domain, total, failures, baseline, reply)

    def _raise(self, domain: str, total: int, failures: int, baseline: float, reply: str) -> None:
        summary = (f"Delivery to {domain} is failing: {failures} of {total} attempts in the last "
                   f"{int(self.window // 60)} min were refused or throttled (usually {baseline:.0%}); last reply: {reply[:200]}")
        log.warning("%s", summary)
        if self.alert is not None:
            now = datetime.fromtimestamp(self.clock(), UTC)
            self.alert(Alert(
                rule="delivery-failures", severity="warning", summary=summary,
                dedupe_key=f"delivery-failures:{int(self.clock() // self.window)}:{domain}", time=now,
                details={"domain": domain, "attempts": total, "failures": failures, "baseline": round(baseline, 4)},
            ))


class Watch:
    """The schedule on the delivering process: blocklists every check_interval, DKIM keys more often."""

    def __init__(self, config: Config, alert: AlertSink | None = None) -> None:
        self.config = config
        self.alert = alert
        r = config.reputation
        self.blocklists = BlocklistWatch(
            [a.strip() for a in config.deliverability.outbound_addresses], list(r.dnsbl),
            resolver_for(config, cached=False), config.path("reputation.json"), alert,
        ) if r.dnsbl and config.deliverability.outbound_addresses else None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        from smtpgate.deliverability.rotation import advance_all

        dkim_every = self.config.deliverability.dkim_check_interval.total_seconds()
        lists_every = self.config.reputation.check_interval.total_seconds()
        next_lists = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.blocklists is not None and now >= next_lists:
                next_lists = now + lists_every
                await self._safely(self.blocklists.check)
            await self._safely(lambda: self._advance(advance_all))
            try:
                await asyncio.wait_for(self._stop.wait(), min(dkim_every, max(0.1, next_lists - time.monotonic()))
                                       if self.blocklists is not None else dkim_every)
            except TimeoutError:
                pass

    def _advance(self, advance_all) -> None:  # type: ignore[no-untyped-def]
        for domain, changes in advance_all(self.config).items():
            for change in changes:
                if not change.startswith("waiting for"):
                    log.info("dkim %s: %s", domain, change)

    @staticmethod
    async def _safely(work: Callable[[], object]) -> None:
        try:
            await asyncio.to_thread(work)
        except Exception:  # noqa: BLE001 - the watch must outlive one bad round
            log.exception("reputation watch round failed")
