"""Bans, failure counters and quotas, over one backend interface (in-memory or Redis).

Never imports the wire (smtp), the CLI or the web; the session asks, the guard answers.
"""

from smtpgate.guard.backend import Ban, GuardBackend, GuardUnavailable, QuotaCounter
from smtpgate.guard.service import (
    FailureOutcome,
    Guard,
    GuardRefused,
    GuardSettings,
    QuotaHit,
    QuotaPlan,
    Refusal,
    Throttled,
    source_key,
)

__all__ = [
    "Ban",
    "FailureOutcome",
    "Guard",
    "GuardBackend",
    "GuardRefused",
    "GuardSettings",
    "GuardUnavailable",
    "QuotaCounter",
    "QuotaHit",
    "QuotaPlan",
    "Refusal",
    "Throttled",
    "source_key",
]
