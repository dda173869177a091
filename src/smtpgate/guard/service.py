"""The guard's policy: what is counted, when a source is banned, how quotas are taken.

Brute force is answered by banning *sources*, never accounts:

- every failed AUTH counts against the source address, its network (/24 or /64) and the
  login it tried;
- `ip_failures` failures of one address within `failure_window` ban that address;
  `network_failures` failures of one network ban the network. A ban lasts `ban_for`,
  doubled for each earlier ban of the same source within `strike_memory`, at most
  `max_ban`;
- a network ban (made automatically) does not apply to an address that has authenticated
  successfully within `known_good_for`: the real user in the same office keeps working;
- `login_failures` failures of one login (from anywhere) put the login under protection
  for `ban_for`: while it lasts, a guessable secret (an account password) for that login
  from a source where it never succeeded is *held*: at most one such attempt per
  `protected_delay` per login and process, each waiting its turn, then checked as usual.
  Nothing is refused: a correct secret always gets in, so protection is no lockout lever;
  an app password or a token is never held, since guessing one is hopeless anyway;
- password spraying (failures on `spray_logins` distinct logins from `spray_sources`
  distinct sources within `failure_window`) is answered for `spray_for` by banning any
  source at `spray_ip_failures` failures instead of `ip_failures` (`spray.py`);
- allow-listed networks are never counted, banned or held back.

"Known-good" means the same IPv4 address, or the same IPv6 /64, succeeded before; the
guard asks the audit log through the `known_good` callable (a database query, made only
on these rare paths, never per ordinary connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from smtpgate.cidr import HostBitsSet, exact_network
from smtpgate.errors import Kind, OpError
from smtpgate.guard.backend import Ban, GuardBackend, GuardUnavailable, QuotaCounter
from smtpgate.guard.networks import (
    NetworkSet,
    NotANetwork,
    Source,
    parse_network,
    parse_source,
)
from smtpgate.guard.spray import LOGINS_KEY, SOURCES_KEY, SprayWatch

if TYPE_CHECKING:
    from smtpgate.config import GuardConfig
    from smtpgate.guard.bans import BanBook, BanRecord

log = logging.getLogger("smtpgate.guard")

HOUR = 3600.0
DAY = 86400.0
KnownGood = Callable[[str | None, str, datetime], bool]
"""(login or None for any login, source key, since) -> a successful AUTH came from there."""


class GuardRefused(OpError, ValueError):
    """An operator asked for something the guard will not do (ban an allow-listed network)."""

    code = "ban-refused"
    kind = Kind.CONFLICT

    def __init__(self, message: str, hint: str = "", *, malformed: bool = False, **details: Any) -> None:
        details.setdefault("kind", Kind.INVALID if malformed else Kind.CONFLICT)
        super().__init__(message, hint, **details)
        self.malformed = malformed  # the input is not well-formed (a usage error), rather than refused


@dataclass(frozen=True)
class GuardSettings:
    failure_window: float = 600.0
    ip_failures: int = 10
    network_failures: int = 30
    login_failures: int = 20
    ban_for: float = 900.0
    max_ban: float = DAY
    strike_memory: float = 7 * DAY
    known_good_for: float = 30 * DAY
    network_prefix_v4: int = 24
    network_prefix_v6: int = 64
    allow_networks: tuple[str, ...] = ()
    protected_delay: float = 5.0
    spray_logins: int = 20
    spray_sources: int = 10
    spray_ip_failures: int = 3
    spray_for: float = 3600.0
    account_max_per_hour: int = 0
    account_max_per_day: int = 0
    account_max_rcpt_per_hour: int = 0
    account_max_rcpt_per_day: int = 0

    @classmethod
    def from_config(cls, cfg: GuardConfig) -> GuardSettings:
        return cls(
            failure_window=cfg.failure_window.total_seconds(),
            ip_failures=cfg.ip_failures,
            network_failures=cfg.network_failures,
            login_failures=cfg.login_failures,
            ban_for=cfg.ban_for.total_seconds(),
            max_ban=cfg.max_ban.total_seconds(),
            strike_memory=cfg.strike_memory.total_seconds(),
            known_good_for=cfg.known_good_for.total_seconds(),
            network_prefix_v4=cfg.network_prefix_v4,
            network_prefix_v6=cfg.network_prefix_v6,
            allow_networks=tuple(cfg.allow_networks),
            protected_delay=cfg.protected_delay.total_seconds(),
            spray_logins=cfg.spray_logins,
            spray_sources=cfg.spray_sources,
            spray_ip_failures=cfg.spray_ip_failures,
            spray_for=cfg.spray_for.total_seconds(),
            account_max_per_hour=cfg.account_max_per_hour,
            account_max_per_day=cfg.account_max_per_day,
            account_max_rcpt_per_hour=cfg.account_max_rcpt_per_hour,
            account_max_rcpt_per_day=cfg.account_max_rcpt_per_day,
        )


def source_key(source: Source) -> str:
    """The unit of "known-good": an IPv4 address, or an IPv6 /64 (privacy addresses rotate in it)."""
    return source.ip if source.version == 4 else source.network(64)


def login_key(login: str) -> str:
    return login.strip().lower()[:320]


@dataclass(frozen=True)
class Refusal:
    reason: str            # "banned": the source is banned
    ban: Ban | None = None


@dataclass(frozen=True)
class Throttled:
    """The login is protected and this source never used it: the attempt was held, now it goes on."""

    seconds: float


@dataclass(frozen=True)
class FailureOutcome:
    ip_failures: int = 0
    network_failures: int = 0
    login_failures: int = 0
    new_bans: tuple[Ban, ...] = ()
    source_banned: bool = False      # the failing source itself is banned now: close its connection
    login_protected: bool = False    # this failure put the login under protection
    spray_started: bool = False      # this failure revealed a password spray (alert and tighter bans)
    spray: bool = False              # a spray is being answered: the per-source threshold is tighter


@dataclass(frozen=True)
class QuotaHit:
    kind: str     # messages | recipients
    scope: str    # credential | account
    period: str   # hour | day
    limit: int

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "scope": self.scope, "period": self.period, "limit": self.limit}


@dataclass(frozen=True)
class QuotaPlan:
    """The limited counts one principal's mail is taken from; empty when nothing is limited."""

    counters: tuple[QuotaCounter, ...] = ()
    hits: tuple[QuotaHit, ...] = ()

    def amounts(self, messages: int, recipients: int) -> list[int]:
        return [messages if hit.kind == "messages" else recipients for hit in self.hits]


@dataclass
class _Cache:
    """Answers of the known-good query, kept briefly (an attack asks the same many times)."""

    entries: dict[tuple[str | None, str], tuple[bool, float]] = field(default_factory=dict)

    def get(self, key: tuple[str | None, str], now: float) -> bool | None:
        hit = self.entries.get(key)
        return hit[0] if hit and hit[1] > now else None

    def put(self, key: tuple[str | None, str], value: bool, now: float) -> None:
        if len(self.entries) > 50_000:
            self.entries.clear()
        self.entries[key] = (value, now + (300.0 if value else 15.0))


class Guard:
    def __init__(
        self,
        backend: GuardBackend,
        settings: GuardSettings = GuardSettings(),
        *,
        book: BanBook | None = None,
        known_good: KnownGood | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.book = book
        self._known_good = known_good
        self._clock = clock
        self._sleep = sleep
        self._holds: dict[str, asyncio.Lock] = {}
        self._spray = SprayWatch(settings.spray_logins, settings.spray_sources, settings.failure_window, settings.spray_for)
        self._allow = NetworkSet(settings.allow_networks)
        self._cache = _Cache()
        self._synced_at: datetime | None = None
        self._last_outage_log = 0.0

    # ------------------------------------------------------------- addresses

    def network_of(self, source: Source) -> str:
        s = self.settings
        return source.network(s.network_prefix_v4 if source.version == 4 else s.network_prefix_v6)

    def allowed(self, source: Source) -> bool:
        return bool(self._allow) and source in self._allow

    def _candidates(self, source: Source) -> list[str]:
        return source.networks(self.backend.ban_prefixes(source.version))

    # ------------------------------------------------------- connect and AUTH

    async def check_connection(self, ip: str) -> Ban | None:
        """The ban that keeps this address out, or None. Fails open when the backend is down."""
        source = parse_source(ip)
        if source is None or self.allowed(source):
            return None
        try:
            bans, _ = await self.backend.lookup(self._candidates(source), None, now=self._clock())
            return await self._applicable(bans, source)
        except GuardUnavailable as exc:
            self._outage(exc)
            return None

    async def before_auth(self, ip: str, login: str, *, guessable: bool = True) -> Refusal | Throttled | None:
        """Whether this AUTH may go ahead: a banned source is refused; a guessable secret
        for a protected login, from a source that never used it, is held first (never refused)."""
        source = parse_source(ip)
        if source is None or self.allowed(source):
            return None
        account = login_key(login)
        try:
            bans, protected = await self.backend.lookup(self._candidates(source), account or None, now=self._clock())
            ban = await self._applicable(bans, source)
        except GuardUnavailable as exc:
            self._outage(exc)
            return None
        if ban is not None:
            return Refusal("banned", ban)
        if not (protected and guessable) or await self._is_known_good(account, source):
            return None
        started = time.monotonic()
        await self._hold(account)
        banned = await self.check_connection(ip)  # it may have been banned while it waited
        return Refusal("banned", banned) if banned is not None else Throttled(time.monotonic() - started)

    async def _hold(self, account: str) -> None:
        """One guessable attempt per `protected_delay` per protected login, in turn."""
        lock = self._holds.get(account)
        if lock is None:
            if len(self._holds) > 10_000:  # bounded: drop the idle ones
                self._holds = {k: v for k, v in self._holds.items() if v.locked()}
            lock = self._holds[account] = asyncio.Lock()
        async with lock:
            await self._sleep(self.settings.protected_delay)

    async def _applicable(self, bans: Sequence[Ban], source: Source) -> Ban | None:
        """The ban that applies: automatic network bans spare addresses known to be good."""
        if not bans:
            return None
        strict = [b for b in bans if b.single_address or b.source == "manual"]
        if strict:
            return max(strict, key=lambda b: b.until)
        if await self._is_known_good(None, source):
            return None
        return max(bans, key=lambda b: b.until)

    async def _is_known_good(self, login: str | None, source: Source) -> bool:
        if self._known_good is None:
            return False
        key = (login, source_key(source))
        now = self._clock()
        cached = self._cache.get(key, now)
        if cached is not None:
            return cached
        since = datetime.fromtimestamp(now - self.settings.known_good_for, UTC)
        try:
            answer = await asyncio.to_thread(self._known_good, login, key[1], since)
        except Exception as exc:  # noqa: BLE001 - an unreachable audit log must not open the gate
            log.warning("known-good lookup failed: %s", type(exc).__name__)
            return False
        self._cache.put(key, answer, now)
        return answer

    async def auth_failed(self, ip: str, login: str) -> FailureOutcome:
        """Count a failed AUTH; ban the source or protect the login when a threshold is crossed.

        An empty `login` (an exchange aborted before naming one) counts against the source only."""
        source = parse_source(ip)
        if source is None or self.allowed(source):
            return FailureOutcome()
        s = self.settings
        now = self._clock()
        address = source.network(source.bits)
        network = self.network_of(source)
        account = login_key(login)
        keys = [f"ip:{source.ip}", f"net:{network}"] + ([f"login:{account}"] if account else [])
        limits = [s.ip_failures + 1, s.network_failures + 1, s.login_failures + 1][: len(keys)]
        try:
            ip_count, net_count, *rest = await self.backend.record_failures(keys, limits, window=s.failure_window, now=now)
            login_count = rest[0] if rest else 0
            spray_started = await self._watch_spray(new_source=ip_count == 1, new_login=bool(account) and login_count == 1, now=now)
            spray = self._spray.active(now)
            bans = []
            window = _human(s.failure_window)
            if ip_count == s.ip_failures or (spray and ip_count >= min(s.spray_ip_failures, s.ip_failures)):
                why = f"{ip_count} failed logins in {window}" + (" during a password spray" if spray and ip_count < s.ip_failures else "")
                bans.append(await self._ban(address, why, now))
            if net_count == s.network_failures and network != address:
                bans.append(await self._ban(network, f"{net_count} failed logins from the network in {window}", now))
            if account and login_count >= s.login_failures:
                await self.backend.protect(account, until=now + s.ban_for, now=now)
        except GuardUnavailable as exc:
            self._outage(exc)
            return FailureOutcome()
        source_banned = any(b.single_address for b in bans) or (
            any(not b.single_address for b in bans) and not await self._is_known_good(None, source)
        )
        return FailureOutcome(
            ip_count, net_count, login_count, tuple(bans), source_banned, bool(account) and login_count == s.login_failures,
            spray_started, spray,
        )

    async def leaked_secret_used(self, ip: str, what: str) -> FailureOutcome:
        """A secret that only a thief can hold (a canary) was used: ban the source at once,
        for the longest ban; allow-listed sources are left alone, as everywhere."""
        source = parse_source(ip)
        if source is None or self.allowed(source):
            return FailureOutcome()
        s, now = self.settings, self._clock()
        address = source.network(source.bits)
        try:
            ban = await self.backend.ban(address, base=s.max_ban, cap=s.max_ban, strike_memory=s.strike_memory,
                                         reason=f"used {what}", now=now)
        except GuardUnavailable as exc:
            self._outage(exc)
            return FailureOutcome()
        log.warning("banned %s until %s: used %s", address, _when(ban.until), what)
        await self._record(ban)
        return FailureOutcome(new_bans=(ban,), source_banned=True)

    async def _watch_spray(self, *, new_source: bool, new_login: bool, now: float) -> bool:
        """Count distinct sources and logins that failed within the window; True when a spray starts."""
        if not (new_source or new_login):
            return False
        s = self.settings
        keys = ([SOURCES_KEY] if new_source else []) + ([LOGINS_KEY] if new_login else [])
        counts = await self.backend.record_failures(keys, [max(s.spray_sources, s.spray_logins) + 1] * len(keys),
                                                    window=s.failure_window, now=now)
        found = dict(zip(keys, counts, strict=True))
        started = self._spray.seen(logins=found.get(LOGINS_KEY), sources=found.get(SOURCES_KEY), now=now)
        if started:
            log.warning("password spray: failures on %d logins from %d sources within %s; sources are banned at %d failures for %s",
                        self._spray.logins, self._spray.sources, _human(s.failure_window), s.spray_ip_failures, _human(s.spray_for))
        return started

    async def _ban(self, network: str, reason: str, now: float) -> Ban:
        s = self.settings
        ban = await self.backend.ban(
            network, base=s.ban_for, cap=s.max_ban, strike_memory=s.strike_memory, reason=reason, now=now
        )
        log.warning("banned %s until %s (strike %d): %s", network, _when(ban.until), ban.strikes, reason)
        await self._record(ban)
        return ban

    async def _record(self, ban: Ban, actor: str = "") -> None:
        if self.book is None:
            return
        try:
            await asyncio.to_thread(self.book.record, ban, actor=actor)
        except Exception as exc:  # noqa: BLE001 - the ban is in force; only its record is late
            log.error("could not record the ban of %s: %s", ban.network, type(exc).__name__)

    def _outage(self, exc: GuardUnavailable) -> None:
        now = time.monotonic()
        if now - self._last_outage_log > 10:
            self._last_outage_log = now
            log.error("guard backend unavailable, letting connections through: %s", exc)

    # ----------------------------------------------------------------- quotas

    def quota_plan(
        self,
        *,
        credential_id: str,
        account_id: int | str,
        max_per_hour: int | None = None,
        max_per_day: int | None = None,
        max_rcpt_per_hour: int | None = None,
        max_rcpt_per_day: int | None = None,
    ) -> QuotaPlan:
        """The counters a principal's mail counts against: its credential's scopes, and the account limits."""
        s = self.settings
        wanted = [
            ("credential", credential_id, "messages", "hour", max_per_hour),
            ("credential", credential_id, "messages", "day", max_per_day),
            ("credential", credential_id, "recipients", "hour", max_rcpt_per_hour),
            ("credential", credential_id, "recipients", "day", max_rcpt_per_day),
            ("account", str(account_id), "messages", "hour", s.account_max_per_hour),
            ("account", str(account_id), "messages", "day", s.account_max_per_day),
            ("account", str(account_id), "recipients", "hour", s.account_max_rcpt_per_hour),
            ("account", str(account_id), "recipients", "day", s.account_max_rcpt_per_day),
        ]
        counters, hits = [], []
        for scope, who, kind, period, limit in wanted:
            if not limit:
                continue
            window = HOUR if period == "hour" else DAY
            counters.append(QuotaCounter(f"{scope}:{who}:{kind}:{period}", limit, window))
            hits.append(QuotaHit(kind, scope, period, limit))
        return QuotaPlan(tuple(counters), tuple(hits))

    async def quota_check(self, plan: QuotaPlan, *, messages: int, recipients: int) -> QuotaHit | None:
        """Would `messages` more messages with `recipients` recipients stay within every limit? (no change)"""
        return await self._quota(plan, messages, recipients, "peek")

    async def quota_take(self, plan: QuotaPlan, *, recipients: int) -> QuotaHit | None:
        """Count one accepted message, atomically with the check; the limit hit when refused."""
        return await self._quota(plan, 1, recipients, "take")

    async def quota_refund(self, plan: QuotaPlan, *, recipients: int) -> None:
        """Give back a message that was counted but could not be stored."""
        await self._quota(plan, -1, -recipients, "add")

    async def _quota(self, plan: QuotaPlan, messages: int, recipients: int, mode: str) -> QuotaHit | None:
        if not plan.counters:
            return None
        index = await self.backend.quota(plan.counters, plan.amounts(messages, recipients), mode=mode, now=self._clock())  # type: ignore[arg-type]
        return None if index is None else plan.hits[index]

    # ---------------------------------------------------------- manual bans

    async def ban_network(self, cidr: str, duration: timedelta, *, reason: str = "", actor: str = "") -> Ban:
        """An operator's ban: recorded in the database and put in place in the backend."""
        try:
            network = parse_network(cidr)
            exact_network(cidr)  # parsed, so only HostBitsSet can come out of it
        except NotANetwork as exc:
            raise GuardRefused(str(exc), malformed=True, code="invalid-network", field="network", network=cidr) from None
        except HostBitsSet as exc:
            raise GuardRefused(str(exc), f"Ban {exc.address} for that one address, or {exc.network} for the whole network.",
                               malformed=True, code="host-bits-set", field="network", network=cidr) from None
        clash = self._allow.overlaps(network)
        inside = [net for net in clash if network.subnet_of(ipaddress.ip_network(net))]  # type: ignore[arg-type]
        if inside:
            raise GuardRefused(
                f"{network} is inside the allow-listed {', '.join(inside)} ([guard] allow_networks): "
                "allow-listed sources are never counted or banned, so no narrower ban can help",
                f"To ban it, take {inside[0]} out of [guard] allow_networks (or list a narrower network "
                "that leaves it out) and restart the servers; then ban it again.",
                code="network-allow-listed", network=str(network),
            )
        if clash:
            raise GuardRefused(
                f"{network} contains the allow-listed {', '.join(clash)}; allow-listed networks are never banned",
                "Ban a narrower network that leaves them out, or remove them from [guard] allow_networks first.",
                code="network-allow-listed", network=str(network),
            )
        if duration <= timedelta(0):
            raise GuardRefused("the ban duration must be positive", "Use a duration such as 1h, 30m or 7d.",
                               malformed=True, code="invalid-duration", field="duration")
        now = self._clock()
        ban = Ban(str(network), now, now + duration.total_seconds(), 1, reason or "banned by an operator", "manual")
        if self.book is not None:
            self.book.record(ban, actor=actor)
        await self.backend.set_ban(ban)
        return ban

    async def unban_network(self, cidr: str, *, actor: str = "") -> bool:
        """Lift a ban (and forget the failures counted against it); False when there was none."""
        try:
            network = str(parse_network(cidr))
        except NotANetwork as exc:
            raise GuardRefused(str(exc), malformed=True, code="invalid-network", field="network", network=cidr) from None
        lifted = self.book.lift(network, actor=actor) is not None if self.book is not None else False
        removed = await self.backend.unban(network)
        address = network.rpartition("/")[0]
        keys = [f"net:{network}"] + ([f"ip:{address}"] if network.endswith(("/32", "/128")) else [])
        await self.backend.reset_failures(keys)
        return lifted or removed

    def recorded_bans(self) -> list[BanRecord]:
        return self.book.active() if self.book is not None else []

    # ---------------------------------------------------------- housekeeping

    async def sync(self) -> int:
        """Apply ban changes from the database (the CLI's, other workers'); the number applied."""
        if self.book is None:
            return 0
        started = datetime.fromtimestamp(self._clock(), UTC)
        if self._synced_at is None:
            records = await asyncio.to_thread(self.book.active)
        else:
            # changes are read with a minute of overlap: applying one twice changes nothing
            records = await asyncio.to_thread(self.book.changed_since, self._synced_at - timedelta(minutes=1))
        now = self._clock()
        applied = 0
        for record in records:
            if record.lifted_at is not None:
                applied += await self.backend.unban(record.network, placed_before=record.lifted_at.timestamp())
            elif record.until.timestamp() > now:
                await self.backend.set_ban(record.to_ban())
                applied += 1
        self._synced_at = started
        return applied

    async def sweep(self) -> None:
        await self.backend.sweep(now=self._clock())

    async def close(self) -> None:
        await self.backend.close()


def _human(seconds: float) -> str:
    from smtpgate.durations import format_duration

    return format_duration(timedelta(seconds=seconds))


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
