"""The invalidation channel of a cluster: PostgreSQL NOTIFY, with a short bounded fallback.

Why NOTIFY rather than Redis pub/sub: the change and its notification are one transaction.
`announce()` runs `pg_notify` inside the transaction that revokes, rotates, disables or
changes a password; PostgreSQL delivers it when, and only if, that transaction commits,
and never before the change is visible to a reader. A Redis PUBLISH would come after the
commit from the changing process, so a crash between the two would lose it, and a
subscriber could hear it before the row is readable and refill its cache with the old
state. The database is also already the one thing every node must reach to log anyone
in; Redis stays what it is, the guard's counters.

While the listener is up, `check()` costs nothing: every change arrives as it commits
(typically within a few milliseconds) and empties exactly the entries it concerns. When
it is down (connection lost, PostgreSQL restarting), the caches fall back:

- the database answers: the version row (`DatabaseChannel`) is read before each use, one
  primary-key SELECT, so a change is still seen on the next login;
- the database does not answer either: cached entries are trusted only for
  `[cluster] cache_fallback_ttl` after the last moment the cache was known current (the
  listener's last answered ping, or the last version read); after that a login is
  answered 454 4.7.0 (temporary) until the database is back.

When the listener comes back, every cache is emptied (notifications sent meanwhile are
lost). A node cut off from the database notices within the listener's ping and TCP user
timeout (about 3 s), so a change made elsewhere meanwhile is honoured there after at most
that plus the fallback lifetime; docs/cluster.md gives the measured figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session

from smtpgate.credentials.invalidation import EVERYTHING, Change, DatabaseChannel
from smtpgate.store import Store
from smtpgate.store.db import StoreUnavailable
from smtpgate.store.notify import Listener, Notifier

log = logging.getLogger("smtpgate.cluster")

TOPIC = "credentials"


def encode(change: Change) -> str:
    """`a:<account id>`, `c:<credential id>`, both joined by a space, or `*`."""
    parts = []
    if change.account_id is not None:
        parts.append(f"a:{change.account_id}")
    if change.credential_id is not None:
        parts.append(f"c:{change.credential_id}")
    return " ".join(parts) or "*"


def decode(payload: str) -> Change:
    """What `encode` wrote; anything unexpected means everything (forgetting too much is safe)."""
    account: int | None = None
    credential: str | None = None
    for part in payload.split():
        kind, _, value = part.partition(":")
        if kind == "a" and value.isdigit():
            account = int(value)
        elif kind == "c" and value:
            credential = value
        else:
            return EVERYTHING
    return Change(account_id=account, credential_id=credential)


class NotifyChannel(DatabaseChannel):
    def __init__(self, store: Store, notifier: Notifier, listener: Listener | None, *,
                 fallback_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(store)
        self._notifier = notifier
        self._listener = listener
        self._fallback = fallback_ttl
        self._clock = clock
        self._trusted_until = 0.0
        self._state_lock = threading.Lock()
        self.heard = 0
        if listener is not None:
            listener.subscribe(TOPIC, self._heard)
            listener.on_state(self._state)

    def announce(self, db: Session, change: Change) -> None:
        super().announce(db, change)  # the version row: for processes that do not listen, and the fallback
        self._notifier.send(db, TOPIC, encode(change))

    def check(self) -> None:
        now = self._clock()
        if self._listener is not None and self._listener.up:
            with self._state_lock:
                self._trusted_until = now + self._fallback
            return
        try:
            super().check()
        except StoreUnavailable:
            heard = self._listener.alive_at if self._listener is not None else 0.0
            with self._state_lock:
                trusted = now < max(self._trusted_until, heard + self._fallback)
            if not trusted:
                raise
            return
        with self._state_lock:
            self._trusted_until = now + self._fallback

    def _heard(self, payload: str) -> None:
        self.heard += 1
        self._deliver(decode(payload))

    def _state(self, up: bool) -> None:
        if up:
            self._deliver(EVERYTHING)  # what was said while we were not listening is lost
