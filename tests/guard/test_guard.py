"""The guard's policy on both backends: ban sources not accounts, spare the known-good, quotas."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from smtpgate.guard import Guard, GuardRefused, GuardSettings, Throttled
from smtpgate.guard.bans import BanBook
from smtpgate.guard.memory import MemoryBackend
from tests.guard.conftest import Clock, run

SETTINGS = GuardSettings(ip_failures=10, network_failures=30, login_failures=20, ban_for=900, max_ban=86400)


class KnownGood:
    """A stand-in for the audit log's answer: which (login, source) pairs succeeded before."""

    def __init__(self, *pairs: tuple[str | None, str]) -> None:
        self.pairs = set(pairs)
        self.asked: list[tuple[str | None, str]] = []

    def __call__(self, login: str | None, source: str, since: datetime) -> bool:
        self.asked.append((login, source))
        return any(source == s and (login is None or login == l) for l, s in self.pairs)


def guard_on(backend, clock: Clock, known: KnownGood | None = None, settings: GuardSettings = SETTINGS, book=None) -> Guard:
    return Guard(backend, settings, known_good=known or KnownGood(), clock=clock, book=book)


def test_ten_failures_ban_the_address_and_only_it(backend, clock: Clock) -> None:
    guard = guard_on(backend, clock)

    async def go() -> None:
        outcomes = [await guard.auth_failed("192.0.2.66", "alice@example.com") for _ in range(10)]
        assert [o.source_banned for o in outcomes] == [False] * 9 + [True]
        (ban,) = outcomes[-1].new_bans
        assert ban.network == "192.0.2.66/32" and ban.until == clock() + 900
        assert (await guard.check_connection("192.0.2.66")).network == "192.0.2.66/32"
        assert await guard.check_connection("192.0.2.67") is None  # the neighbour is not banned
        refusal = await guard.before_auth("192.0.2.66", "bob@example.com")
        assert refusal is not None and refusal.reason == "banned"
        clock.advance(901)
        assert await guard.check_connection("192.0.2.66") is None

    run(backend, go())


def test_network_ban_spares_known_good_addresses_but_not_manual_bans(backend, clock: Clock) -> None:
    known = KnownGood((None, "198.51.100.10"))
    guard = guard_on(backend, clock, known, GuardSettings(ip_failures=100, network_failures=12))

    async def go() -> None:
        new_bans = []
        for i in range(12):
            outcome = await guard.auth_failed(f"198.51.100.{100 + i % 4}", f"user{i}@example.com")
            new_bans += outcome.new_bans
        assert [b.network for b in new_bans] == ["198.51.100.0/24"]
        assert (await guard.check_connection("198.51.100.100")).network == "198.51.100.0/24"
        assert await guard.check_connection("198.51.100.10") is None  # logged in before: spared
        await guard.ban_network("198.51.100.0/24", timedelta(hours=1), reason="operator")
        assert (await guard.check_connection("198.51.100.10")).source == "manual"

    run(backend, go())


def test_login_under_attack_holds_guesses_and_never_refuses(backend, clock: Clock) -> None:
    """Protection slows guessing of the account password; it refuses nobody, so an attacker
    cannot use it to lock the owner out, from home or from a new place."""
    known = KnownGood(("alice@example.com", "192.0.2.1"))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    guard = Guard(backend, SETTINGS, known_good=known, clock=clock, sleep=sleep)

    async def go() -> None:
        outcomes = [await guard.auth_failed(f"203.0.113.{i}", "Alice@Example.com") for i in range(20)]
        assert [o.login_protected for o in outcomes].index(True) == 19  # the 20th failure protects it
        assert not any(o.source_banned for o in outcomes)  # 20 addresses, one failure each
        assert await guard.before_auth("192.0.2.1", "alice@example.com") is None and slept == []  # the owner, from home
        held = await guard.before_auth("203.0.113.200", "alice@example.com")
        assert isinstance(held, Throttled) and slept == [SETTINGS.protected_delay]  # held, then let through
        # an app password or a token cannot be guessed: never held, never refused
        assert await guard.before_auth("203.0.113.200", "alice@example.com", guessable=False) is None
        assert await guard.before_auth("203.0.113.200", "bob@example.com") is None  # other logins: untouched
        assert len(slept) == 1
        clock.advance(901)
        assert await guard.before_auth("203.0.113.200", "alice@example.com") is None and len(slept) == 1

    run(backend, go())


def test_held_attempts_take_turns_and_a_ban_made_meanwhile_applies(backend, clock: Clock) -> None:
    import asyncio

    order: list[str] = []

    async def sleep(seconds: float) -> None:
        order.append("sleep")
        await asyncio.sleep(0)

    guard = Guard(backend, GuardSettings(login_failures=1, ip_failures=2), known_good=KnownGood(), clock=clock, sleep=sleep)

    async def go() -> None:
        await guard.auth_failed("203.0.113.1", "alice@example.com")  # protects the login
        first, second = await asyncio.gather(
            guard.before_auth("198.51.100.1", "alice@example.com"), guard.before_auth("198.51.100.2", "alice@example.com"))
        assert isinstance(first, Throttled) and isinstance(second, Throttled) and order == ["sleep", "sleep"]
        await guard.auth_failed("198.51.100.3", "x@example.com")
        await guard.auth_failed("198.51.100.3", "x@example.com")  # banned now
        refused = await guard.before_auth("198.51.100.3", "alice@example.com")
        assert refused is not None and not isinstance(refused, Throttled) and refused.reason == "banned"

    run(backend, go())


def test_password_spraying_is_detected_and_tightens_the_per_source_threshold(backend, clock: Clock) -> None:
    """150 failures over 50 logins from 50 sources: no source and no login reaches its own
    threshold, the spread gives it away; then three failures ban a source."""
    settings = GuardSettings(ip_failures=10, network_failures=1000, login_failures=20, spray_logins=20,
                             spray_sources=10, spray_ip_failures=3, spray_for=3600)
    guard = guard_on(backend, clock, settings=settings)

    async def go() -> None:
        outcomes = []
        for round_ in range(3):
            for i in range(50):
                outcomes.append(await guard.auth_failed(f"10.{i}.0.{round_ + 1}", f"user{i}@example.com"))
                clock.advance(0.04)
        started = [n for n, o in enumerate(outcomes) if o.spray_started]
        assert len(started) == 1 and started[0] < 50  # once, within the first round
        assert all(o.spray for o in outcomes[started[0]:])
        source = "192.0.2.77"
        results = [await guard.auth_failed(source, f"victim{i}@example.com") for i in range(3)]
        assert [r.source_banned for r in results] == [False, False, True]
        assert (await guard.check_connection(source)).network == f"{source}/32"
        clock.advance(3601 + 600)  # the spray is over and its failures left the window
        calm = [await guard.auth_failed("192.0.2.88", "a@example.com") for _ in range(3)]
        assert not any(o.source_banned or o.spray for o in calm)

    run(backend, go())


def test_allow_listed_networks_are_never_counted_or_banned(backend, clock: Clock) -> None:
    settings = GuardSettings(ip_failures=2, allow_networks=("10.0.0.0/8",))
    guard = guard_on(backend, clock, settings=settings)

    async def go() -> None:
        for _ in range(5):
            outcome = await guard.auth_failed("10.1.2.3", "a@example.com")
            assert outcome.new_bans == () and outcome.ip_failures == 0
        assert await guard.check_connection("10.1.2.3") is None
        with pytest.raises(GuardRefused, match="allow-listed 10.0.0.0/8"):
            await guard.ban_network("10.1.0.0/16", timedelta(hours=1))
        with pytest.raises(GuardRefused, match="allow-listed"):
            await guard.ban_network("0.0.0.0/0", timedelta(hours=1))

    run(backend, go())


def test_repeat_offender_is_banned_twice_as_long(backend, clock: Clock) -> None:
    guard = guard_on(backend, clock, settings=GuardSettings(ip_failures=3, ban_for=600))

    async def go() -> list[float]:
        lengths = []
        for _ in range(3):
            for _ in range(3):
                outcome = await guard.auth_failed("2001:db8::66", "a@example.com")
            (ban,) = outcome.new_bans
            lengths.append(ban.until - clock())
            clock.advance(ban.until - clock() + 1)
        return lengths

    assert run(backend, go()) == [600, 1200, 2400]


def test_ipv6_counts_the_64_and_ipv4_mapped_is_ipv4(backend, clock: Clock) -> None:
    guard = guard_on(backend, clock, settings=GuardSettings(ip_failures=100, network_failures=3))

    async def go() -> None:
        for i in range(3):
            outcome = await guard.auth_failed(f"2001:db8:1:2::{i + 1}", "a@example.com")
        assert [b.network for b in outcome.new_bans] == ["2001:db8:1:2::/64"]
        assert (await guard.check_connection("2001:db8:1:2:ffff::9")).network == "2001:db8:1:2::/64"
        assert await guard.check_connection("2001:db8:1:3::1") is None
        await guard.ban_network("192.0.2.5", timedelta(minutes=5))
        assert (await guard.check_connection("::ffff:192.0.2.5")).network == "192.0.2.5/32"

    run(backend, go())


def test_quota_plan_takes_credential_scopes_and_account_limits(clock: Clock) -> None:
    guard = guard_on(MemoryBackend(), clock, settings=GuardSettings(account_max_per_day=5))
    assert guard.quota_plan(credential_id="ap_1", account_id=1).hits[0].scope == "account"
    plan = guard.quota_plan(credential_id="ap_1", account_id=1, max_per_hour=2, max_rcpt_per_hour=3)
    assert [(h.kind, h.scope, h.period, h.limit) for h in plan.hits] == [
        ("messages", "credential", "hour", 2), ("recipients", "credential", "hour", 3),
        ("messages", "account", "day", 5),
    ]
    assert guard_on(MemoryBackend(), clock).quota_plan(credential_id="x", account_id=1).counters == ()

    async def go() -> None:
        assert await guard.quota_take(plan, recipients=2) is None
        assert (await guard.quota_check(plan, messages=0, recipients=2)).kind == "recipients"
        assert await guard.quota_take(plan, recipients=1) is None
        hit = await guard.quota_check(plan, messages=1, recipients=0)
        assert (hit.kind, hit.period, hit.limit) == ("messages", "hour", 2)
        await guard.quota_refund(plan, recipients=1)
        assert await guard.quota_check(plan, messages=1, recipients=1) is None

    run(guard.backend, go())


def test_cli_bans_reach_a_server_through_the_database(store, clock: Clock) -> None:
    """What `smtpgate ban add/remove` writes, a server on the in-memory backend applies."""
    book = BanBook(store, clock)
    cli = Guard(MemoryBackend(), SETTINGS, book=book, clock=clock)       # the CLI's own, thrown away
    server = Guard(MemoryBackend(), SETTINGS, book=book, clock=clock)    # a running server's

    async def go() -> None:
        await server.sync()
        await cli.ban_network("192.0.2.0/28", timedelta(hours=2), reason="abuse report", actor="cli:ops")
        assert await server.check_connection("192.0.2.3") is None  # not yet synced
        assert await server.sync() == 1
        assert (await server.check_connection("192.0.2.3")).reason == "abuse report"
        (record,) = cli.recorded_bans()
        assert (record.network, record.source, record.created_by) == ("192.0.2.0/28", "manual", "cli:ops")
        clock.advance(5)
        assert await cli.unban_network("192.0.2.0/28", actor="cli:ops") is True
        await server.sync()
        assert await server.check_connection("192.0.2.3") is None
        assert cli.recorded_bans() == []
        assert await cli.unban_network("192.0.2.0/28") is False

    run(server.backend, go())


def test_automatic_bans_are_recorded_and_survive_a_restart(store, clock: Clock) -> None:
    book = BanBook(store, clock)
    before = Guard(MemoryBackend(), GuardSettings(ip_failures=2), book=book, clock=clock)
    after = Guard(MemoryBackend(), GuardSettings(ip_failures=2), book=book, clock=clock)

    async def go() -> None:
        await before.auth_failed("192.0.2.44", "x@example.com")
        await before.auth_failed("192.0.2.44", "x@example.com")
        await after.sync()  # a new process starts: it loads the bans in force
        assert (await after.check_connection("192.0.2.44")).network == "192.0.2.44/32"

    run(before.backend, go())
    (record,) = book.active()
    assert record.source == "auto" and "2 failed logins" in record.reason
