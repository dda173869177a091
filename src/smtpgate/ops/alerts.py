"""Anomaly alerts: what the rules raised, and where each was sent."""

from __future__ import annotations

import builtins
from datetime import timedelta

from smtpgate.audit.store import Alert
from smtpgate.ops.actor import Actor
from smtpgate.ops.audit import _limit, since
from smtpgate.ops.base import Concern


class Alerts(Concern):
    def list(self, actor: Actor, *, since_: str | timedelta | None = None, rule: str | None = None,
             limit: int = 100) -> builtins.list[Alert]:
        _limit(limit)
        return self.rt.audit_store.alerts(since=since(since_), rule=rule, limit=limit)
