"""The one interface both guard backends implement, and the values they hand out.

A backend is a bag of counters and bans with atomic updates; every policy decision
(thresholds, what to ban, what counts) lives in `Guard` above it, so the in-memory and
the Redis backend cannot drift apart in behaviour. Times are epoch seconds (floats) from
the caller's clock, so tests can move time without sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

BanSource = Literal["auto", "manual"]
QuotaMode = Literal["peek", "take", "add"]
SlotRefusal = Literal["total", "address"]  # which connection cap a new connection would exceed
QUOTA_BUCKETS = 60  # a quota window is counted in 60 buckets (1 min of an hour, 24 min of a day)


class GuardUnavailable(Exception):
    """The backend cannot be reached (Redis down); the message never holds a password."""


@dataclass(frozen=True)
class Ban:
    network: str          # canonical CIDR; a single address is a /32 or /128
    since: float
    until: float
    strikes: int = 1      # how many times this source was banned within the strike memory
    reason: str = ""
    source: BanSource = "auto"

    @property
    def prefix(self) -> int:
        return int(self.network.rpartition("/")[2])

    @property
    def single_address(self) -> bool:
        return self.prefix == (32 if ":" not in self.network else 128)

    def active(self, now: float) -> bool:
        return self.until > now


@dataclass(frozen=True)
class QuotaCounter:
    """One limited count: e.g. messages of credential ap_1 per hour, at most 100."""

    key: str
    limit: int
    window: float  # seconds

    @property
    def step(self) -> float:
        return self.window / QUOTA_BUCKETS


class GuardBackend(Protocol):
    async def record_failures(self, keys: Sequence[str], caps: Sequence[int], *, window: float, now: float) -> list[int]:
        """Add one failure to each key; the failures of each within `window`, at most its cap."""
        ...

    async def reset_failures(self, keys: Sequence[str]) -> None: ...

    async def ban(
        self, network: str, *, base: float, cap: float, strike_memory: float, reason: str, now: float
    ) -> Ban:
        """Ban for base * 2^(strikes-1), at most cap; strikes are remembered for strike_memory."""
        ...

    async def set_ban(self, ban: Ban) -> None:
        """Put a ban in place as given (manual bans, bans synced from the database); never shortens one."""
        ...

    async def unban(self, network: str, *, placed_before: float | None = None) -> bool:
        """Lift a ban; with placed_before, only one placed at or before that time."""
        ...

    async def lookup(self, networks: Sequence[str], login: str | None, *, now: float) -> tuple[list[Ban], bool]:
        """The active bans among `networks`, and whether `login` is under protection."""
        ...

    def ban_prefixes(self, version: int) -> Sequence[int]:
        """The prefix lengths worth looking up for an address of this IP version."""
        ...

    async def protect(self, login: str, *, until: float, now: float) -> None: ...

    async def quota(self, counters: Sequence[QuotaCounter], amounts: Sequence[int], *, mode: QuotaMode, now: float) -> int | None:
        """peek: the index of the first counter that `amounts` would take past its limit, or None.
        take: the same check and, when nothing is exceeded, the addition, atomically.
        add: add without checking (a refund is a negative amount)."""
        ...

    async def active_bans(self, *, now: float) -> list[Ban]: ...

    async def acquire_slot(self, ip: str, *, max_total: int, max_per_ip: int, now: float) -> SlotRefusal | None:
        """Take a connection slot for `ip` unless a cap is reached, atomically; the cap hit, or None.
        Slots of a process that dies are given back (by its channel, or its lease in Redis)."""
        ...

    async def release_slot(self, ip: str, *, now: float) -> None: ...

    async def heartbeat(self, *, now: float) -> None:
        """Called every `sync_interval`: renew this process's lease on its slots, reclaim dead ones."""
        ...

    async def sweep(self, *, now: float) -> None:
        """Forget what has expired (the in-memory backend's housekeeping; Redis expires keys itself)."""
        ...

    async def close(self) -> None: ...
