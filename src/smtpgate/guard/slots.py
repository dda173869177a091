"""Connection caps counted where the guard counts: one tally for all workers of a machine.

`max_connections` and `max_connections_per_ip` are taken from the guard backend when a
connection arrives and given back when it ends, so a cap of 200 per address means 200
on the machine however many workers share the listeners (with Redis: per address over
every server, per machine in total; see docs/guard.md). A worker that dies gives its
slots back through its channel (shared backend) or its lease (Redis).

When the backend cannot be reached, this process falls back to counting its own
connections against the same caps: a Redis outage must not lift the caps altogether.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from smtpgate.guard.backend import GuardBackend, GuardUnavailable, SlotRefusal

log = logging.getLogger("smtpgate.guard")


class ConnectionSlots:
    def __init__(self, backend: GuardBackend, *, max_total: int, max_per_ip: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._clock = clock
        self._shared: Counter[str] = Counter()   # slots this process took in the backend
        self._local: Counter[str] = Counter()    # slots counted here only, during an outage
        self._last_outage_log = 0.0

    @property
    def held(self) -> int:
        """The connections of this process that hold a slot."""
        return self._shared.total() + self._local.total()

    async def acquire(self, ip: str) -> SlotRefusal | None:
        """Take a slot for a new connection from `ip`; the cap it would exceed, or None."""
        try:
            refusal = await self.backend.acquire_slot(
                ip, max_total=self.max_total, max_per_ip=self.max_per_ip, now=self._clock()
            )
        except GuardUnavailable as exc:
            self._outage(exc)
            return self._acquire_locally(ip)
        if refusal is None:
            self._shared[ip] += 1
        return refusal

    async def release(self, ip: str) -> None:
        """Give back the slot of a connection that ended (call once per successful acquire)."""
        if self._local[ip] > 0:
            _take(self._local, ip)
            return
        if self._shared[ip] <= 0:
            return
        _take(self._shared, ip)
        try:
            await self.backend.release_slot(ip, now=self._clock())
        except GuardUnavailable as exc:  # the lease (Redis) or the channel gives it back later
            self._outage(exc)

    def _acquire_locally(self, ip: str) -> SlotRefusal | None:
        if self.held >= self.max_total:
            return "total"
        if self._shared[ip] + self._local[ip] >= self.max_per_ip:
            return "address"
        self._local[ip] += 1
        return None

    def _outage(self, exc: GuardUnavailable) -> None:
        now = time.monotonic()
        if now - self._last_outage_log > 10:
            self._last_outage_log = now
            log.error("guard backend unavailable, counting connection caps in this process only: %s", exc)


def _take(counter: Counter[str], ip: str) -> None:
    counter[ip] -= 1
    if counter[ip] <= 0:
        del counter[ip]
