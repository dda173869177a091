"""The in-memory guard backend: the state of one process (and of the shared host).

Everything is a dict lookup plus a deque operation per event. Failure timestamps are
kept per key up to the key's cap (the threshold plus one), so an attacker hammering one
key cannot grow it; quota windows keep at most 61 buckets per counter. `sweep()` (run
by the server every few seconds) drops keys whose contents have all expired. Nothing
here awaits anything, so each method is atomic on the event loop.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from smtpgate.guard.backend import QUOTA_BUCKETS, Ban, QuotaCounter, QuotaMode, SlotRefusal


@dataclass
class _Window:
    """A quota's recent buckets: [bucket index, amount] oldest first, and their sum."""

    buckets: deque[list[int]] = field(default_factory=deque)
    total: int = 0

    def current(self, counter: QuotaCounter, now: float) -> tuple[int, int]:
        bucket = int(now // counter.step)
        oldest = bucket - QUOTA_BUCKETS
        while self.buckets and self.buckets[0][0] < oldest:
            self.total -= self.buckets.popleft()[1]
        return bucket, self.total

    def add(self, bucket: int, amount: int) -> None:
        if self.buckets and self.buckets[-1][0] == bucket:
            self.buckets[-1][1] += amount
        else:
            self.buckets.append([bucket, amount])
        self.total += amount


class MemoryBackend:
    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._failure_window: dict[str, float] = {}
        self._bans: dict[str, Ban] = {}
        self._prefixes: Counter[tuple[int, int]] = Counter()
        self._strikes: dict[str, tuple[int, float]] = {}
        self._protected: dict[str, float] = {}
        self._quotas: dict[str, tuple[_Window, QuotaCounter]] = {}
        self._slots: Counter[str] = Counter()
        self._slots_total = 0

    # ---------------------------------------------------------------- failures

    async def record_failures(self, keys: Sequence[str], caps: Sequence[int], *, window: float, now: float) -> list[int]:
        counts = []
        horizon = now - window
        for key, cap in zip(keys, caps, strict=True):
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque()
            while times and times[0] <= horizon:
                times.popleft()
            times.append(now)
            while len(times) > cap:
                times.popleft()
            self._failure_window[key] = window
            counts.append(len(times))
        return counts

    async def reset_failures(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
            self._failure_window.pop(key, None)

    # -------------------------------------------------------------------- bans

    async def ban(self, network: str, *, base: float, cap: float, strike_memory: float, reason: str, now: float) -> Ban:
        strikes, expires = self._strikes.get(network, (0, 0.0))
        strikes = strikes + 1 if expires > now else 1
        self._strikes[network] = (strikes, now + strike_memory)
        until = now + min(cap, base * 2 ** min(strikes - 1, 64))
        current = self._bans.get(network)
        if current is not None and current.until > until:
            until = current.until
        ban = Ban(network, now, until, strikes, reason, "auto")
        self._put(ban)
        return ban

    async def set_ban(self, ban: Ban) -> None:
        current = self._bans.get(ban.network)
        if current is not None and current.until >= ban.until:
            return
        self._put(ban)

    def _put(self, ban: Ban) -> None:
        if ban.network not in self._bans:
            self._prefixes[(4 if ":" not in ban.network else 6, ban.prefix)] += 1
        self._bans[ban.network] = ban

    async def unban(self, network: str, *, placed_before: float | None = None) -> bool:
        ban = self._bans.get(network)
        if ban is None or (placed_before is not None and ban.since > placed_before):
            return False
        self._drop(network)
        return True

    def _drop(self, network: str) -> None:
        ban = self._bans.pop(network)
        key = (4 if ":" not in network else 6, ban.prefix)
        self._prefixes[key] -= 1
        if self._prefixes[key] <= 0:
            del self._prefixes[key]

    def ban_prefixes(self, version: int) -> Sequence[int]:
        return [prefix for (v, prefix) in self._prefixes if v == version]

    async def lookup(self, networks: Sequence[str], login: str | None, *, now: float) -> tuple[list[Ban], bool]:
        bans = [ban for net in networks if (ban := self._bans.get(net)) is not None and ban.until > now]
        protected = login is not None and self._protected.get(login, 0.0) > now
        return bans, protected

    async def protect(self, login: str, *, until: float, now: float) -> None:
        if self._protected.get(login, 0.0) < until:
            self._protected[login] = until

    async def active_bans(self, *, now: float) -> list[Ban]:
        return sorted((b for b in self._bans.values() if b.until > now), key=lambda b: b.until)

    # ------------------------------------------------------------------ quotas

    async def quota(self, counters: Sequence[QuotaCounter], amounts: Sequence[int], *, mode: QuotaMode, now: float) -> int | None:
        windows = []
        for index, (counter, amount) in enumerate(zip(counters, amounts, strict=True)):
            entry = self._quotas.get(counter.key)
            if entry is None or entry[1] != counter:
                old = entry[0] if entry else _Window()
                entry = self._quotas[counter.key] = (old, counter)
            window = entry[0]
            bucket, total = window.current(counter, now)
            if mode != "add" and amount > 0 and total + amount > counter.limit:
                return index
            windows.append((window, bucket, amount))
        if mode != "peek":
            for window, bucket, amount in windows:
                if amount:
                    window.add(bucket, amount)
        return None

    # ------------------------------------------------------------ connections

    async def acquire_slot(self, ip: str, *, max_total: int, max_per_ip: int, now: float) -> SlotRefusal | None:
        if self._slots_total >= max_total:
            return "total"
        if self._slots[ip] >= max_per_ip:
            return "address"
        self._slots[ip] += 1
        self._slots_total += 1
        return None

    async def release_slot(self, ip: str, *, now: float) -> None:
        held = self._slots.get(ip, 0)
        if held <= 0:
            return
        self._slots_total -= 1
        if held == 1:
            del self._slots[ip]
        else:
            self._slots[ip] = held - 1

    def slots_held(self) -> int:
        return self._slots_total

    async def heartbeat(self, *, now: float) -> None:
        return None

    # ------------------------------------------------------------ housekeeping

    async def sweep(self, *, now: float) -> None:
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= now - self._failure_window[k]]:
            await self.reset_failures([key])
        for network in [n for n, b in self._bans.items() if b.until <= now]:
            self._drop(network)
        for network in [n for n, (_, expires) in self._strikes.items() if expires <= now]:
            del self._strikes[network]
        for login in [k for k, until in self._protected.items() if until <= now]:
            del self._protected[login]
        for key in list(self._quotas):
            window, counter = self._quotas[key]
            window.current(counter, now)
            if not window.buckets:
                del self._quotas[key]

    async def close(self) -> None:
        return None
