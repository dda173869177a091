"""Both guard backends behave the same: failure windows, bans and strikes, quotas, atomicity."""

from __future__ import annotations

import asyncio

import pytest

from smtpgate.guard.backend import Ban, QuotaCounter
from smtpgate.guard.memory import MemoryBackend
from smtpgate.guard.redis_backend import RedisBackend
from tests.guard.conftest import REDIS_URL, Clock, run

HOUR = 3600.0


def test_failures_are_counted_within_the_window_and_capped(backend, clock: Clock) -> None:
    async def go() -> None:
        counts = []
        for _ in range(5):
            counts.append(await backend.record_failures(["ip:a", "login:x"], [4, 100], window=600, now=clock()))
            clock.advance(100)
        assert [c[1] for c in counts] == [1, 2, 3, 4, 5]
        assert [c[0] for c in counts] == [1, 2, 3, 4, 4]  # capped: the oldest are dropped
        clock.advance(250)  # the first three failures (at 0, 100, 200) are now older than 600 s
        assert await backend.record_failures(["login:x"], [100], window=600, now=clock()) == [4]
        await backend.reset_failures(["login:x"])
        assert await backend.record_failures(["login:x"], [100], window=600, now=clock()) == [1]

    run(backend, go())


def test_ban_doubles_for_repeat_offenders_up_to_the_cap(backend, clock: Clock) -> None:
    async def go() -> list[float]:
        lengths = []
        for _ in range(9):
            ban = await backend.ban("192.0.2.7/32", base=900, cap=86400, strike_memory=7 * 86400, reason="r", now=clock())
            lengths.append(ban.until - clock())
            clock.advance(ban.until - clock() + 1)  # serve the ban, then offend again
        return lengths

    lengths = run(backend, go())
    assert lengths == [900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400]


def test_strikes_are_forgotten_after_the_strike_memory(backend, clock: Clock) -> None:
    async def go() -> tuple[int, int]:
        first = await backend.ban("198.51.100.0/24", base=60, cap=3600, strike_memory=600, reason="r", now=clock())
        clock.advance(601)
        again = await backend.ban("198.51.100.0/24", base=60, cap=3600, strike_memory=600, reason="r", now=clock())
        return first.strikes, again.strikes

    assert run(backend, go()) == (1, 1)


def test_lookup_finds_active_bans_among_the_networks_and_protected_logins(backend, clock: Clock) -> None:
    async def go() -> None:
        await backend.ban("203.0.113.5/32", base=900, cap=86400, strike_memory=86400, reason="ten failures", now=clock())
        await backend.set_ban(Ban("203.0.113.0/24", clock(), clock() + 60, 1, "operator", "manual"))
        bans, protected = await backend.lookup(["203.0.113.5/32", "203.0.113.0/24", "10.0.0.0/8"], "a@x", now=clock())
        assert {(b.network, b.source, b.reason) for b in bans} == {
            ("203.0.113.5/32", "auto", "ten failures"), ("203.0.113.0/24", "manual", "operator"),
        }
        assert not protected
        await backend.protect("a@x", until=clock() + 100, now=clock())
        assert (await backend.lookup([], "a@x", now=clock()))[1] is True
        assert (await backend.lookup([], "b@x", now=clock()))[1] is False
        clock.advance(61)
        bans, protected = await backend.lookup(["203.0.113.5/32", "203.0.113.0/24"], "a@x", now=clock())
        assert [b.network for b in bans] == ["203.0.113.5/32"] and protected
        clock.advance(900)
        assert await backend.lookup(["203.0.113.5/32"], "a@x", now=clock()) == ([], False)

    run(backend, go())


def test_set_ban_never_shortens_and_unban_respects_placed_before(backend, clock: Clock) -> None:
    async def go() -> None:
        now = clock()
        await backend.set_ban(Ban("192.0.2.0/24", now, now + 600, 1, "long", "manual"))
        await backend.set_ban(Ban("192.0.2.0/24", now, now + 60, 1, "short", "manual"))
        (ban,), _ = await backend.lookup(["192.0.2.0/24"], None, now=now)
        assert ban.until == pytest.approx(now + 600) and ban.reason == "long"
        assert await backend.unban("192.0.2.0/24", placed_before=now - 1) is False  # placed after that: kept
        assert await backend.unban("192.0.2.0/24", placed_before=now + 1) is True
        assert await backend.lookup(["192.0.2.0/24"], None, now=now) == ([], False)
        assert await backend.unban("192.0.2.0/24") is False
        assert [b.network for b in await backend.active_bans(now=now)] == []

    run(backend, go())


def test_quota_is_exact_at_the_boundary_and_slides(backend, clock: Clock) -> None:
    counter = QuotaCounter("credential:ap_1:messages:hour", 3, HOUR)

    async def go() -> None:
        assert await backend.quota([counter], [1], mode="peek", now=clock()) is None
        for _ in range(3):
            assert await backend.quota([counter], [1], mode="take", now=clock()) is None
            clock.advance(60)
        assert await backend.quota([counter], [1], mode="peek", now=clock()) == 0
        assert await backend.quota([counter], [1], mode="take", now=clock()) == 0  # refused, not counted
        # counts leave the window no earlier than an hour after they were made
        clock.advance(HOUR - 180 - 1)
        assert await backend.quota([counter], [1], mode="take", now=clock()) == 0
        clock.advance(HOUR / 60 + 1)
        assert await backend.quota([counter], [1], mode="take", now=clock()) is None
        await backend.quota([counter], [-1], mode="add", now=clock())  # a refund
        assert await backend.quota([counter], [1], mode="take", now=clock()) is None
        assert await backend.quota([counter], [1], mode="take", now=clock()) == 0

    run(backend, go())


def test_quota_checks_every_counter_and_adds_to_none_when_one_is_full(backend, clock: Clock) -> None:
    messages = QuotaCounter("c:messages:hour", 10, HOUR)
    recipients = QuotaCounter("c:recipients:hour", 5, HOUR)

    async def go() -> None:
        assert await backend.quota([messages, recipients], [1, 4], mode="take", now=clock()) is None
        assert await backend.quota([messages, recipients], [1, 2], mode="take", now=clock()) == 1
        # the refused take did not count the message either
        assert await backend.quota([messages], [10], mode="peek", now=clock()) == 0
        assert await backend.quota([messages], [9], mode="peek", now=clock()) is None
        assert await backend.quota([messages, recipients], [1, 1], mode="take", now=clock()) is None
        assert await backend.quota([recipients], [1], mode="peek", now=clock()) == 0

    run(backend, go())


def test_concurrent_takes_never_overshoot(backend, clock: Clock) -> None:
    counter = QuotaCounter("race:messages:hour", 10, HOUR)

    async def go() -> list[int | None]:
        return await asyncio.gather(*(backend.quota([counter], [1], mode="take", now=clock()) for _ in range(40)))

    results = run(backend, go())
    assert results.count(None) == 10 and results.count(0) == 30


def test_concurrent_failures_cross_the_threshold_exactly_once(backend, clock: Clock) -> None:
    async def go() -> list[int]:
        results = await asyncio.gather(
            *(backend.record_failures(["ip:198.51.100.9"], [11], window=600, now=clock()) for _ in range(30))
        )
        return [r[0] for r in results]

    counts = run(backend, go())
    assert counts.count(10) == 1  # exactly one caller sees the tenth failure, so exactly one bans


def test_memory_sweep_forgets_what_expired(clock: Clock) -> None:
    backend = MemoryBackend()

    async def go() -> None:
        await backend.record_failures(["ip:a"], [5], window=60, now=clock())
        await backend.ban("192.0.2.1/32", base=60, cap=60, strike_memory=120, reason="", now=clock())
        await backend.protect("a@x", until=clock() + 60, now=clock())
        await backend.quota([QuotaCounter("q", 5, HOUR)], [1], mode="take", now=clock())
        clock.advance(2 * HOUR)
        await backend.sweep(now=clock())

    asyncio.run(go())
    assert not backend._failures and not backend._bans and not backend._strikes
    assert not backend._protected and not backend._quotas and not backend.ban_prefixes(4)


def test_two_redis_clients_share_counters_bans_and_quotas(redis_prefix: str, clock: Clock) -> None:
    first, second = RedisBackend(REDIS_URL, prefix=redis_prefix), RedisBackend(REDIS_URL, prefix=redis_prefix)
    counter = QuotaCounter("shared:messages:hour", 2, HOUR)

    async def go() -> None:
        try:
            assert await first.record_failures(["ip:x"], [10], window=600, now=clock()) == [1]
            assert await second.record_failures(["ip:x"], [10], window=600, now=clock()) == [2]
            await first.ban("192.0.2.9/32", base=60, cap=600, strike_memory=600, reason="r", now=clock())
            bans, _ = await second.lookup(["192.0.2.9/32"], None, now=clock())
            assert [b.network for b in bans] == ["192.0.2.9/32"]
            assert await first.quota([counter], [1], mode="take", now=clock()) is None
            assert await second.quota([counter], [1], mode="take", now=clock()) is None
            assert await first.quota([counter], [1], mode="take", now=clock()) == 0
        finally:
            await first.close()
            await second.close()

    asyncio.run(go())


def test_redis_down_is_guard_unavailable_without_the_password() -> None:
    from smtpgate.guard import GuardUnavailable

    backend = RedisBackend("redis://:hunter2-secret@127.0.0.1:1/0", prefix="x")

    async def go() -> None:
        try:
            await backend.lookup(["192.0.2.1/32"], None, now=0)
        finally:
            await backend.close()

    with pytest.raises(GuardUnavailable) as info:
        asyncio.run(go())
    assert "hunter2" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_connection_slots_hold_both_caps_and_come_back(backend, clock: Clock) -> None:
    async def go() -> list[str | None]:
        take = lambda ip: backend.acquire_slot(ip, max_total=4, max_per_ip=2, now=clock())  # noqa: E731
        answers = [await take("192.0.2.1"), await take("192.0.2.1"), await take("192.0.2.1"),
                   await take("192.0.2.2"), await take("192.0.2.3"), await take("192.0.2.4")]
        await backend.release_slot("192.0.2.1", now=clock())
        answers.append(await take("192.0.2.3"))
        await backend.release_slot("192.0.2.2", now=clock())
        answers.append(await take("192.0.2.3"))
        return answers

    assert run(backend, go()) == [None, None, "address", None, None, "total", None, "address"]


def test_concurrent_slots_never_overshoot(backend, clock: Clock) -> None:
    async def go() -> list[str | None]:
        return await asyncio.gather(
            *(backend.acquire_slot("198.51.100.4", max_total=100, max_per_ip=7, now=clock()) for _ in range(30))
        )

    assert run(backend, go()).count(None) == 7


def test_redis_slots_of_a_process_whose_lease_ran_out_come_back(redis_prefix: str, clock: Clock) -> None:
    dead = RedisBackend(REDIS_URL, prefix=redis_prefix, node="machine-a", lease=10)
    alive = RedisBackend(REDIS_URL, prefix=redis_prefix, node="machine-b", lease=10)
    alive.owner = "machine-b/2"  # two processes, as two workers would be

    async def go() -> list[str | None]:
        try:
            caps = {"max_total": 5, "max_per_ip": 2}
            answers = [await dead.acquire_slot("192.0.2.1", now=clock(), **caps),
                       await dead.acquire_slot("192.0.2.1", now=clock(), **caps),
                       await alive.acquire_slot("192.0.2.1", now=clock(), **caps)]  # the cap is for all servers
            clock.advance(5)
            await alive.heartbeat(now=clock())  # within the lease: nothing is taken away
            answers.append(await alive.acquire_slot("192.0.2.1", now=clock(), **caps))
            clock.advance(6)
            await alive.heartbeat(now=clock())  # `dead` never renewed: its slots come back
            answers += [await alive.acquire_slot("192.0.2.1", now=clock(), **caps),
                        await alive.acquire_slot("192.0.2.1", now=clock(), **caps),
                        await alive.acquire_slot("192.0.2.1", now=clock(), **caps)]
            await dead.release_slot("192.0.2.1", now=clock())  # late: must not give back another's slot
            answers.append(await alive.acquire_slot("192.0.2.1", now=clock(), **caps))
            return answers
        finally:
            await dead.close()
            await alive.close()

    assert asyncio.run(go()) == [None, None, "address", "address", None, None, "address", "address"]


def test_redis_total_cap_is_per_machine(redis_prefix: str, clock: Clock) -> None:
    one = RedisBackend(REDIS_URL, prefix=redis_prefix, node="machine-a")
    two = RedisBackend(REDIS_URL, prefix=redis_prefix, node="machine-b")

    async def go() -> list[str | None]:
        try:
            caps = {"max_total": 1, "max_per_ip": 10}
            return [await one.acquire_slot("192.0.2.1", now=clock(), **caps),
                    await one.acquire_slot("192.0.2.2", now=clock(), **caps),
                    await two.acquire_slot("192.0.2.3", now=clock(), **caps)]
        finally:
            await one.close()
            await two.close()

    assert asyncio.run(go()) == [None, "total", None]
