"""When to try again: exponential backoff with jitter, bounded by the queue lifetime.

A 4xx reply or a network error means "later": the n-th retry waits
`initial * 2**(n-1)`, capped at `maximum`, then spread by +/- `jitter` so that a
smarthost coming back is not hit by the whole queue in the same second. Once a message
has waited `lifetime` since it was received, it is bounced instead (RFC 5321 4.5.4.1
suggests four to five days).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    initial: timedelta = timedelta(minutes=1)
    maximum: timedelta = timedelta(hours=1)
    jitter: float = 0.2
    lifetime: timedelta = timedelta(days=5)

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """The wait after the `attempts`-th failed attempt (1 for the first failure)."""
        exponent = max(0, attempts - 1)
        base = self.initial.total_seconds() * (2 ** min(exponent, 40))
        base = min(base, self.maximum.total_seconds())
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return timedelta(seconds=max(0.0, base * (1 + spread)))

    def expired(self, received_at: datetime, now: datetime) -> bool:
        return now - received_at >= self.lifetime

    def next_attempt(self, attempts: int, received_at: datetime, now: datetime, rng: random.Random | None = None) -> datetime:
        """When to try again; never later than the moment the message expires."""
        return min(now + self.delay(attempts, rng), received_at + self.lifetime)
