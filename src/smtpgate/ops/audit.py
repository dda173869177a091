"""Audit queries: the wire's events (auth, message, connect) and the operator trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from smtpgate.audit.events import StoredEvent
from smtpgate.errors import Invalid
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern, duration
from smtpgate.ops.journal import OperatorEvent

EVENT_KINDS = ("auth", "message", "connect")
KINDS = (*EVENT_KINDS, "operator")
RESULTS = ("ok", "fail")


def since(value: str | timedelta | None) -> datetime | None:
    """A duration back from now ("1h", "7d") as a UTC time."""
    span = duration(value, "since")
    return None if span is None else datetime.now(UTC) - span


class Audit(Concern):
    def events(
        self, actor: Actor, *, since_: str | timedelta | None = None, account: str | None = None,
        credential: str | None = None, result: str | None = None, kind: str | None = None,
        limit: int = 200, before_id: int | None = None,
    ) -> list[StoredEvent]:
        """Newest first; `before_id` continues from the last id of the previous page."""
        if result is not None and result not in RESULTS:
            raise Invalid(f"{result!r} is not a result: expected ok or fail", code="invalid-choice", field="result", value=result)
        if kind is not None and kind not in EVENT_KINDS:
            raise Invalid(f"{kind!r} is not an event: expected auth, message or connect", code="invalid-choice", field="kind",
                          value=kind)
        _limit(limit)
        return self.rt.audit_store.query(
            since=since(since_), account=account, credential_id=credential, result=result, kind=kind, limit=limit,
            before_id=before_id,
        )

    def operator(
        self, actor: Actor, *, since_: str | timedelta | None = None, who: str | None = None,
        action: str | None = None, outcome: str | None = None, limit: int = 200, before_id: int | None = None,
    ) -> list[OperatorEvent]:
        _limit(limit)
        return self.journal.query(since=since(since_), actor=who, action=action, outcome=outcome, limit=limit,
                                  before_id=before_id)


def _limit(limit: int) -> None:
    if not 1 <= limit <= 10_000:
        raise Invalid(f"limit {limit}: expected 1 to 10000", code="invalid-limit", field="limit", value=limit)
