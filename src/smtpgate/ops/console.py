"""The operators' console: who may open it, and the dashboard's figures.

An account opens the console when its policy gives it a role (`account set --role`) and it
has a second factor; its actor then carries that role, so every operation checks exactly
what the API checks for a token of that role. The dashboard counts, per time bucket of the
last hour or day: sign-ins that succeeded and failed (SMTP AUTH, the API, the web console),
messages accepted, alerts raised; and, now: the queue's depth, the bans in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from smtpgate.audit.store import activity_rows
from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Forbidden
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern

WINDOWS = {"hour": (timedelta(hours=1), 12), "day": (timedelta(days=1), 24)}   # span, buckets


@dataclass(frozen=True)
class Series:
    name: str
    label: str
    points: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.points)


@dataclass(frozen=True)
class Dashboard:
    window: str
    starts: tuple[datetime, ...]      # each bucket's start, oldest first
    bucket: timedelta
    series: tuple[Series, ...]        # logins ok, logins failed, messages accepted, alerts
    queue_depth: int
    queue_held: int
    active_bans: int
    open_alerts: int                  # alerts raised within the window

    def get(self, name: str) -> Series:
        return next(s for s in self.series if s.name == name)


def console_actor(login: str, role: str, remote_ip: str) -> Actor:
    return Actor(f"web:{login}", Role(role), "web", remote_ip)


class Console(Concern):
    def operator(self, login: str, remote_ip: str) -> Actor:
        """The actor of a signed-in owner in the operators' console; Forbidden without a role or a second factor."""
        account = self.rt.credentials.get_account(login)
        if not account.role or not account.enabled:
            raise Forbidden("this account has no role in the operators' console", code="console-no-role")
        if not self.rt.credentials.second_factors.list(account.login):
            raise Forbidden("the operators' console needs a second factor on your account first",
                            code="console-needs-second-factor")
        return console_actor(account.login, account.role, remote_ip)

    def dashboard(self, actor: Actor, window: str = "hour", *, now: datetime | None = None) -> Dashboard:
        span, count = WINDOWS.get(window, WINDOWS["hour"])
        end = now or datetime.now(UTC)
        bucket = span / count
        start = end - span
        starts = tuple(start + bucket * i for i in range(count))
        names = ("logins_ok", "logins_failed", "messages", "alerts")
        counts = {name: [0] * count for name in names}

        def slot(when: datetime) -> int:
            return min(count - 1, max(0, int((when - start) / bucket)))

        for when, kind, result, _reason in activity_rows(self.rt.store, start):
            if kind == "auth":
                counts["logins_ok" if result == "ok" else "logins_failed"][slot(when)] += 1
            elif kind == "message" and result == "ok":
                counts["messages"][slot(when)] += 1
        alerts = self.rt.audit_store.alerts(since=start, limit=10_000)
        for alert in alerts:
            counts["alerts"][slot(alert.time)] += 1
        queued = self.rt.queue.entries()
        rules = self.rt.queue.hold_rules()
        held = sum(1 for e in queued if e.held_by(rules))
        bans = [b for b in self.rt.guard.recorded_bans() if b.lifted_at is None and b.until > end]
        labels = {"logins_ok": "Sign-ins that succeeded", "logins_failed": "Sign-ins that failed",
                  "messages": "Messages accepted", "alerts": "Alerts"}
        return Dashboard(window if window in WINDOWS else "hour", starts, bucket,
                         tuple(Series(n, labels[n], tuple(counts[n])) for n in names),
                         len(queued), held, len(bans), len(alerts))
