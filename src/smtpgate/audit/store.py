"""Audit events and alerts in the database: writing in batches, reading, pruning.

The server never writes here from its event loop: the recorder's thread does, a batch
at a time. Reads serve the CLI, the anomaly rules and the guard's "known-good" question.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from smtpgate.audit.events import AUTH, MESSAGE, OK, AuditEvent, StoredEvent
from smtpgate.store import Store
from smtpgate.store.models_audit import AlertRow, AuditEventRow

PRUNE_BATCH = 5000


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str          # warning | critical
    summary: str
    dedupe_key: str
    time: datetime
    login: str = ""
    credential_id: str | None = None
    remote_ip: str = ""
    details: dict[str, Any] | None = None
    id: int | None = None
    webhook: str = "off"
    email: str = "off"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "rule": self.rule,
            "severity": self.severity,
            "summary": self.summary,
            "login": self.login,
            "credential_id": self.credential_id,
            "remote_ip": self.remote_ip,
            "details": self.details or {},
            "webhook": self.webhook,
            "email": self.email,
        }


def _alert(row: AlertRow) -> Alert:
    return Alert(
        row.rule, row.severity, row.summary, row.dedupe_key, row.time, row.login, row.credential_id,
        row.remote_ip, row.details, row.id, row.webhook, row.email,
    )


def _stored(row: AuditEventRow) -> StoredEvent:
    event = AuditEvent(
        kind=row.kind, result=row.result, reason=row.reason, listener=row.listener, remote_ip=row.remote_ip,
        tls=row.tls, mechanism=row.mechanism, login=row.login, credential_id=row.credential_id,
        details=row.details or {}, time=row.time,
    )
    return StoredEvent(row.id, event, row.network, row.source)


class AuditStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    # ---------------------------------------------------------------- events

    def insert(self, events: Sequence[tuple[AuditEvent, str, str]]) -> list[int]:
        """Write (event, network, source) triples in one transaction; their ids, in order."""
        if not events:
            return []
        rows = [
            {
                "time": e.time, "kind": e.kind, "listener": e.listener, "remote_ip": e.remote_ip,
                "network": network, "source": source, "tls": e.tls, "mechanism": e.mechanism,
                "login": e.login[:320], "account": e.login.strip().lower()[:320], "credential_id": e.credential_id, "result": e.result,
                "reason": e.reason, "details": e.details,
            }
            for e, network, source in events
        ]
        with self._store.session() as db:
            result = db.execute(insert(AuditEventRow).returning(AuditEventRow.id, sort_by_parameter_order=True), rows)
            return [row[0] for row in result]

    def query(
        self,
        *,
        since: datetime | None = None,
        account: str | None = None,
        credential_id: str | None = None,
        result: str | None = None,
        kind: str | None = None,
        limit: int = 1000,
        before_id: int | None = None,
    ) -> list[StoredEvent]:
        """Newest first; `before_id` continues a page (cursor pagination)."""
        q = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
        if before_id is not None:
            q = q.where(AuditEventRow.id < before_id)
        if since is not None:
            q = q.where(AuditEventRow.time >= since)
        if account:
            q = q.where(AuditEventRow.account == account.strip().lower())
        if credential_id:
            q = q.where(AuditEventRow.credential_id == credential_id.strip())
        if result:
            q = q.where(AuditEventRow.result == result)
        if kind:
            q = q.where(AuditEventRow.kind == kind)
        with self._store.session() as db:
            return [_stored(row) for row in db.scalars(q)]

    def prune(self, before: datetime) -> int:
        """Delete events and alerts older than `before`, in batches; how many events went."""
        total = 0
        while True:
            with self._store.session() as db:
                ids = db.scalars(select(AuditEventRow.id).where(AuditEventRow.time < before).limit(PRUNE_BATCH)).all()
                if ids:
                    db.execute(delete(AuditEventRow).where(AuditEventRow.id.in_(ids)))
            total += len(ids)
            if len(ids) < PRUNE_BATCH:
                break
        with self._store.session() as db:
            db.execute(delete(AlertRow).where(AlertRow.time < before))
        return total

    # ------------------------------------------------------------- questions

    def known_good(self, login: str | None, source: str, since: datetime) -> bool:
        """Did a login (any login, when None) authenticate successfully from this source since then?"""
        q = select(AuditEventRow.id).where(
            AuditEventRow.source == source, AuditEventRow.kind == AUTH, AuditEventRow.result == OK,
            AuditEventRow.time >= since,
        )
        if login is not None:
            q = q.where(AuditEventRow.account == login.strip().lower())
        with self._store.session() as db:
            return db.scalar(q.limit(1)) is not None

    def credential_networks(self, credential_id: str, before_id: int) -> set[str]:
        """The networks a credential authenticated from, before the given event."""
        with self._store.session() as db:
            return set(
                db.scalars(
                    select(AuditEventRow.network).distinct().where(
                        AuditEventRow.credential_id == credential_id, AuditEventRow.kind == AUTH,
                        AuditEventRow.result == OK, AuditEventRow.id < before_id,
                    )
                )
            )

    def login_sources(self, account: str, since: datetime, *, excluding: Collection[str] = (),
                      before: datetime | None = None) -> set[str]:
        """The sources an account logged in from successfully since then (and before `before`),
        with credentials other than `excluding`: where its owner is known to work from."""
        q = select(AuditEventRow.source).distinct().where(
            AuditEventRow.account == account.strip().lower(), AuditEventRow.kind == AUTH, AuditEventRow.result == OK,
            AuditEventRow.time >= since, AuditEventRow.source != "",
        )
        if excluding:
            q = q.where(AuditEventRow.credential_id.not_in(list(excluding)))
        if before is not None:
            q = q.where(AuditEventRow.time < before)
        with self._store.session() as db:
            return set(db.scalars(q))

    def message_volume(self, credential_id: str, *, now: datetime, baseline: timedelta) -> tuple[int, int, datetime | None]:
        """Accepted messages in the last hour, in the baseline before it, and the first one ever seen."""
        hour_ago = now - timedelta(hours=1)
        base = (
            AuditEventRow.credential_id == credential_id, AuditEventRow.kind == MESSAGE, AuditEventRow.result == OK,
        )
        with self._store.session() as db:
            last_hour = db.scalar(select(func.count()).where(*base, AuditEventRow.time >= hour_ago)) or 0
            trailing = db.scalar(
                select(func.count()).where(*base, AuditEventRow.time >= now - baseline, AuditEventRow.time < hour_ago)
            ) or 0
            first = db.scalar(select(func.min(AuditEventRow.time)).where(*base, AuditEventRow.time >= now - baseline))
        return last_hour, trailing, first

    def usage(self, credential_id: str) -> tuple[datetime | None, str | None, int]:
        """Last successful use (time, address) and the number of uses the audit still holds."""
        where = (AuditEventRow.credential_id == credential_id, AuditEventRow.kind == AUTH, AuditEventRow.result == OK)
        with self._store.session() as db:
            count = db.scalar(select(func.count()).where(*where)) or 0
            last = db.execute(
                select(AuditEventRow.time, AuditEventRow.remote_ip).where(*where).order_by(AuditEventRow.id.desc()).limit(1)
            ).first()
        return (last[0], last[1], count) if last else (None, None, count)

    # ---------------------------------------------------------------- alerts

    def add_alert(self, alert: Alert, *, webhook: str, email: str) -> Alert | None:
        """Store an alert; None when one with the same dedupe key exists (another worker raised it)."""
        try:
            with self._store.session() as db:
                row = AlertRow(
                    time=alert.time, rule=alert.rule, severity=alert.severity, dedupe_key=alert.dedupe_key[:255],
                    login=alert.login[:320], credential_id=alert.credential_id, remote_ip=alert.remote_ip,
                    summary=alert.summary, details=alert.details or {}, webhook=webhook, email=email,
                )
                db.add(row)
                db.flush()
                return _alert(row)
        except IntegrityError:
            return None

    def set_delivery(self, alert_id: int, *, webhook: str | None = None, email: str | None = None) -> None:
        values = {k: v for k, v in (("webhook", webhook), ("email", email)) if v is not None}
        if values:
            with self._store.session() as db:
                db.execute(update(AlertRow).where(AlertRow.id == alert_id).values(**values))

    def alerts(self, *, since: datetime | None = None, rule: str | None = None, limit: int = 200) -> list[Alert]:
        q = select(AlertRow).order_by(AlertRow.id.desc()).limit(limit)
        if since is not None:
            q = q.where(AlertRow.time >= since)
        if rule:
            q = q.where(AlertRow.rule == rule)
        with self._store.session() as db:
            return [_alert(row) for row in db.scalars(q)]


NetworkOf = Callable[[str], tuple[str, str]]
"""remote ip -> (network, source) as the guard counts them."""
