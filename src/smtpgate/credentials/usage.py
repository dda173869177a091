"""Last use and use counts of credentials, batched: no database write per login.

Every successful login notes its credential here (in memory); `flush()` writes what
accumulated in one transaction (one UPDATE per credential used since the last flush).
The server flushes every second and on shutdown; the credential service flushes before
it reads credentials, so its own process always sees its own logins. A crash loses at
most the last interval's counts, never a security decision (those never depend on them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from smtpgate.store import Store
from smtpgate.store.models import CredentialRow


@dataclass
class _Use:
    at: datetime
    ip: str
    count: int


class UsageBook:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: dict[str, _Use] = {}

    def note(self, credential_id: str, at: datetime, ip: str) -> None:
        with self._lock:
            use = self._pending.get(credential_id)
            if use is None:
                self._pending[credential_id] = _Use(at, ip, 1)
            else:
                use.count += 1
                if at >= use.at:
                    use.at, use.ip = at, ip

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write what accumulated; returns how many credentials were updated. On a database
        error the counts are kept for the next flush and the error propagates."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                with self._store.session() as db:
                    for credential_id, use in sorted(batch.items()):  # one lock order for every writer
                        db.execute(
                            update(CredentialRow)
                            .where(CredentialRow.id == credential_id)
                            .values(last_used_at=use.at, last_used_ip=use.ip,
                                    use_count=CredentialRow.use_count + use.count)
                        )
            except BaseException:
                with self._lock:
                    for credential_id, use in batch.items():
                        self._merge(credential_id, use)
                raise
            return len(batch)

    def _merge(self, credential_id: str, use: _Use) -> None:
        later = self._pending.get(credential_id)
        if later is None:
            self._pending[credential_id] = use
            return
        later.count += use.count
        if use.at > later.at:
            later.at, later.ip = use.at, use.ip
