"""Password spraying: a few guesses on each of many logins, from many sources.

Each source and each login stays under its own threshold, so the per-source and per-login
rules never fire. What gives it away is the spread: within `failure_window`, failures on
`spray_logins` distinct logins from `spray_sources` distinct sources. The distinct counts
come from the backend (shared by workers and nodes on Redis): a failure that is the first
of its login (or source) within the window adds one to `spray:logins` (or
`spray:sources`), itself a failure list over the same window. This module keeps the last
counts seen and decides; the guard then raises the alert (through the audit event) and
tightens the per-source threshold to `spray_ip_failures` while the spray lasts.
"""

from __future__ import annotations

from dataclasses import dataclass

LOGINS_KEY = "spray:logins"
SOURCES_KEY = "spray:sources"


@dataclass
class SprayWatch:
    logins_needed: int
    sources_needed: int
    window: float
    lasts: float
    logins: int = 0
    logins_at: float = 0.0
    sources: int = 0
    sources_at: float = 0.0
    until: float = 0.0

    def active(self, now: float) -> bool:
        return now < self.until

    def seen(self, *, logins: int | None, sources: int | None, now: float) -> bool:
        """Record fresh distinct counts; True when this starts a spray (not while one lasts)."""
        if logins is not None:
            self.logins, self.logins_at = logins, now
        if sources is not None:
            self.sources, self.sources_at = sources, now
        fresh_logins = self.logins if now - self.logins_at < self.window else 0
        fresh_sources = self.sources if now - self.sources_at < self.window else 0
        if fresh_logins >= self.logins_needed and fresh_sources >= self.sources_needed:
            started = not self.active(now)
            self.until = now + self.lasts
            return started
        return False
