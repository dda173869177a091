"""The record of bans in the database: what `smtpgate ban list` shows, and how bans travel.

The backend enforces bans; this book remembers them. It is how a ban made with the CLI
reaches servers on the in-memory backend (each server reads the changes every
`[guard] sync_interval`), how workers of one node share bans without Redis, and how bans
survive a restart. One row per network holds its latest state; lifting a ban marks the
row instead of deleting it, so the change travels too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from smtpgate.guard.backend import Ban
from smtpgate.store import Store
from smtpgate.store.models_audit import BanRow
from smtpgate.timefmt import iso_utc


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class BanRecord:
    network: str
    since: datetime
    until: datetime
    strikes: int
    reason: str
    source: str
    created_by: str
    lifted_at: datetime | None
    lifted_by: str
    changed_at: datetime

    def to_ban(self) -> Ban:
        return Ban(
            self.network, self.since.timestamp(), self.until.timestamp(), self.strikes, self.reason,
            "manual" if self.source == "manual" else "auto",
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "since": iso_utc(self.since),
            "until": iso_utc(self.until),
            "strikes": self.strikes,
            "reason": self.reason,
            "source": self.source,
            "created_by": self.created_by,
            "lifted_at": iso_utc(self.lifted_at),
            "lifted_by": self.lifted_by,
        }



def _record(row: BanRow) -> BanRecord:
    return BanRecord(
        row.network, row.since, row.until, row.strikes, row.reason, row.source, row.created_by,
        row.lifted_at, row.lifted_by, row.changed_at,
    )


class BanBook:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock

    def record(self, ban: Ban, *, actor: str = "") -> BanRecord:
        """Write a ban's current state (insert or update its network's row)."""
        for _ in range(3):
            try:
                return self._upsert(ban, actor)
            except IntegrityError:  # another process inserted the same network first
                continue
        return self._upsert(ban, actor)

    def _upsert(self, ban: Ban, actor: str) -> BanRecord:
        now = _dt(self._clock())
        with self._store.session() as db:
            row = db.get(BanRow, ban.network)
            if row is None:
                row = BanRow(network=ban.network, lifted_by="")
                db.add(row)
            elif row.lifted_at is None and row.until.timestamp() > ban.until:
                return _record(row)  # never shorten a ban that is in force
            row.since = _dt(ban.since)
            row.until = _dt(ban.until)
            row.strikes = ban.strikes
            row.reason = ban.reason
            row.source = ban.source
            row.created_by = actor
            row.lifted_at = None
            row.lifted_by = ""
            row.changed_at = now
            db.flush()
            return _record(row)

    def lift(self, network: str, *, actor: str = "") -> BanRecord | None:
        """Mark a ban lifted; None when the network had no ban in force."""
        now = _dt(self._clock())
        with self._store.session() as db:
            row = db.get(BanRow, network)
            if row is None or row.lifted_at is not None or row.until <= now:
                return None
            row.lifted_at = now
            row.lifted_by = actor
            row.changed_at = now
            return _record(row)

    def active(self) -> list[BanRecord]:
        now = _dt(self._clock())
        with self._store.session() as db:
            rows = db.scalars(
                select(BanRow).where(BanRow.lifted_at.is_(None), BanRow.until > now).order_by(BanRow.until)
            )
            return [_record(r) for r in rows]

    def changed_since(self, since: datetime) -> list[BanRecord]:
        with self._store.session() as db:
            rows = db.scalars(select(BanRow).where(BanRow.changed_at >= since).order_by(BanRow.changed_at))
            return [_record(r) for r in rows]

    def prune(self, older_than: datetime) -> int:
        """Forget bans that ended long ago (the audit retention)."""
        with self._store.session() as db:
            rows = db.scalars(select(BanRow).where(BanRow.until < older_than, BanRow.changed_at < older_than)).all()
            for row in rows:
                db.delete(row)
            return len(rows)
