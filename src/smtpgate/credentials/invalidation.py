"""How a change to a credential reaches every cache that may hold it, in every process.

The credential service caches what a login needs (credentials/cache.py). Whatever changes
a credential or an account (revoke, rotate, disable, password change, scope change) goes
through `CredentialService`, which tells an `InvalidationChannel` twice: `announce()`
inside the transaction that makes the change, and `committed()` once it is committed.
Before it trusts a cached entry, a cache calls `check()`, which hands it what other
processes changed since the last call.

Implementations:

- `LocalChannel`: this process only (one process, tests).
- `DatabaseChannel`: one row's version in the database goes up in the changing
  transaction; `check()` reads it (one primary-key SELECT, no write) and, when it moved,
  empties the caches. Every worker of a machine, the CLI and other nodes on the same
  database see a revocation on their next AUTH.

A cluster channel (PostgreSQL NOTIFY, Redis pub/sub) implements the same protocol: it
can deliver precise changes as they happen and make `check()` free, falling back to a
short cache lifetime while the channel is down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from smtpgate.store import Store
from smtpgate.store.models import CredentialEpochRow


@dataclass(frozen=True)
class Change:
    """What changed: one credential, an account (all its credentials), or (neither) anything."""

    account_id: int | None = None
    credential_id: str | None = None

    @property
    def everything(self) -> bool:
        return self.account_id is None and self.credential_id is None


EVERYTHING = Change()

Handler = Callable[[Change], None]


class InvalidationChannel(Protocol):
    def announce(self, db: Session, change: Change) -> None:
        """In the transaction that makes the change (so it commits or rolls back with it)."""
        ...

    def committed(self, change: Change) -> None:
        """After that transaction committed: this process's caches forget it now."""
        ...

    def subscribe(self, handler: Handler) -> None:
        """`handler(change)` for every change heard, from any process."""
        ...

    def check(self) -> None:
        """Before a cached entry is trusted: deliver the changes made elsewhere since the last
        call. May raise StoreUnavailable; a cache must then not be trusted."""
        ...


class LocalChannel:
    """Changes made in this process reach this process's caches; nothing else is heard."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def announce(self, db: Session, change: Change) -> None:
        del db, change

    def committed(self, change: Change) -> None:
        self._deliver(change)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def check(self) -> None:
        return None

    def _deliver(self, change: Change) -> None:
        for handler in self._handlers:
            handler(change)


class DatabaseChannel(LocalChannel):
    """A version counter in the database: bumped by every change, read before a cache is used."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store
        self._seen: int | None = None
        self._lock = threading.Lock()
        self._query = select(CredentialEpochRow.version).where(CredentialEpochRow.id == 1)

    def announce(self, db: Session, change: Change) -> None:
        del change
        db.execute(update(CredentialEpochRow).where(CredentialEpochRow.id == 1)
                   .values(version=CredentialEpochRow.version + 1))

    def check(self) -> None:
        with self._store.session() as db:
            version = db.scalar(self._query) or 0
        with self._lock:
            moved = self._seen is not None and version > self._seen
            self._seen = version if self._seen is None else max(self._seen, version)
        if moved:
            self._deliver(EVERYTHING)  # which credential is not recorded: forget them all
