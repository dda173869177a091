"""Backoff: doubling, capped, jittered within bounds, never past the queue lifetime."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from smtpgate.delivery.retry import RetryPolicy

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


def test_delays_double_from_the_initial_wait_up_to_the_cap() -> None:
    policy = RetryPolicy(initial=timedelta(minutes=1), maximum=timedelta(hours=1), jitter=0.0)
    assert [policy.delay(n).total_seconds() for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert policy.delay(10_000) == timedelta(hours=1)


@given(attempts=st.integers(1, 60), jitter=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_jitter_stays_within_its_fraction(attempts: int, jitter: float, seed: int) -> None:
    policy = RetryPolicy(initial=timedelta(seconds=30), maximum=timedelta(hours=2), jitter=jitter)
    base = RetryPolicy(initial=policy.initial, maximum=policy.maximum, jitter=0.0).delay(attempts).total_seconds()
    got = policy.delay(attempts, random.Random(seed)).total_seconds()
    assert base * (1 - jitter) - 1e-6 <= got <= base * (1 + jitter) + 1e-6


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(7)
    assert len({policy.delay(3, rng) for _ in range(20)}) > 10


def test_next_attempt_never_after_expiry_and_expiry_is_the_lifetime() -> None:
    policy = RetryPolicy(initial=timedelta(hours=1), maximum=timedelta(hours=4), jitter=0.0, lifetime=timedelta(days=5))
    late = T0 + timedelta(days=4, hours=23)
    assert policy.next_attempt(10, T0, late) == T0 + timedelta(days=5)
    assert not policy.expired(T0, T0 + timedelta(days=5) - timedelta(seconds=1))
    assert policy.expired(T0, T0 + timedelta(days=5))
