"""The operator audit trail: every mutation by any face, who, what, on what, from where,
when, and how it ended. Never a secret: callers pass names, ids and options only.

`step()` wraps one operation: it checks the actor's role first (a refusal is recorded
too), then records `ok` or the error's stable code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from smtpgate.credentials.api_tokens import Role
from smtpgate.errors import Forbidden, OpError
from smtpgate.ops.actor import Actor
from smtpgate.store import Store
from smtpgate.store.models_ops import OperatorEventRow
from smtpgate.timefmt import iso_utc

log = logging.getLogger("smtpgate.ops")
OK = "ok"
FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class OperatorEvent:
    id: int
    time: datetime
    actor: str
    role: str
    face: str
    remote_ip: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "time": iso_utc(self.time), "event": "operator", "actor": self.actor, "role": self.role,
            "face": self.face, "remote_ip": self.remote_ip, "action": self.action, "target": self.target,
            "outcome": self.outcome, "details": self.details,
        }


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Journal:
    def __init__(self, store: Store, clock: Callable[[], datetime] = _utcnow) -> None:
        self._store = store
        self._clock = clock

    def allow(self, actor: Actor, needed: Role, action: str, target: str = "") -> None:
        """Raise Forbidden (and record the refusal) when the actor's role does not cover `needed`."""
        if actor.may(needed):
            return
        self.record(actor, action, target, FORBIDDEN, {"needs": str(needed)})
        raise Forbidden(f"{action} needs the {needed} role; this token has {actor.role}",
                        code="role-insufficient", needed=str(needed), role=str(actor.role), action=action)

    @contextmanager
    def step(self, actor: Actor, action: str, target: str = "", *, needs: Role = Role.ADMIN,
             **details: Any) -> Iterator[dict[str, Any]]:
        """One mutation: the role check, then the record of its outcome. Yields details to add to."""
        self.allow(actor, needs, action, target)
        extra: dict[str, Any] = dict(details)
        try:
            yield extra
        except OpError as exc:
            self.record(actor, action, target, exc.code, extra)
            raise
        except BaseException:
            self.record(actor, action, target, "error", extra)
            raise
        self.record(actor, action, target, OK, extra)

    def record(self, actor: Actor, action: str, target: str, outcome: str, details: dict[str, Any]) -> None:
        clean = {k: v for k, v in details.items() if v is not None and v != [] and v != ""}
        try:
            with self._store.session() as db:
                db.add(OperatorEventRow(
                    time=self._clock(), actor=actor.name[:200], role=str(actor.role), face=actor.face,
                    remote_ip=actor.remote_ip[:64], action=action, target=target[:320], outcome=outcome[:64],
                    details=clean,
                ))
        except OpError as exc:  # the store is down: the operation's own error says so
            log.error("operator audit not written (%s): %s %s by %s", exc.code, action, target, actor.name)

    def query(
        self, *, since: datetime | None = None, actor: str | None = None, action: str | None = None,
        outcome: str | None = None, before_id: int | None = None, limit: int = 200,
    ) -> list[OperatorEvent]:
        """Newest first; `before_id` continues a page (cursor pagination)."""
        q = select(OperatorEventRow).order_by(OperatorEventRow.id.desc()).limit(limit)
        if since is not None:
            q = q.where(OperatorEventRow.time >= since)
        if actor:
            q = q.where(OperatorEventRow.actor == actor)
        if action:
            q = q.where(OperatorEventRow.action == action)
        if outcome:
            q = q.where(OperatorEventRow.outcome == outcome)
        if before_id is not None:
            q = q.where(OperatorEventRow.id < before_id)
        with self._store.session() as db:
            return [
                OperatorEvent(r.id, r.time, r.actor, r.role, r.face, r.remote_ip, r.action, r.target, r.outcome,
                              r.details or {})
                for r in db.scalars(q)
            ]
