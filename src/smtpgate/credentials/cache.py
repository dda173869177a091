"""What a login needs, kept in memory: credential snapshots and recently verified passwords.

Without it every AUTH read the credential with its account (an ORM join) and every
account-password AUTH ran argon2. Three bounded, short-lived maps, all emptied through
the invalidation channel (credentials/invalidation.py) on any change:

- app passwords by their keyed hash (the lookup key the database is searched by);
- account passwords by login (the stored argon2 hash and the account's state);
- verified logins, in the manner of Dovecot's auth cache: an HMAC, under a key that
  lives only in this process, of the login, the password and the stored hash, so a
  repeat login with the same password costs no argon2. A password change gives a new
  stored hash (so old entries can never match), and disable, revocation and password
  change also remove the account's entries at once.

Only successes are cached: a wrong secret always takes the full path (and the session's
fixed failure time). State that depends on the clock (expiry) is evaluated on every use.
A snapshot read from the database is stored only if no invalidation happened while it
was being read (`generation`), so a change racing with a cache fill is never lost.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from smtpgate.credentials.invalidation import Change, InvalidationChannel
from smtpgate.credentials.model import CredentialKind
from smtpgate.credentials.scopes import Scopes

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Snapshot:
    """One credential and its account as a login needs them, read in one go."""

    credential_id: str
    kind: CredentialKind
    account_id: int
    login: str
    enabled: bool                 # the account's
    require_app_passwords: bool   # the account's
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    secret_hash: str
    scopes: Scopes
    canary: bool = False
    retires: str | None = None    # a delivered successor not used yet: the predecessor it retires
    name: str = ""                # the credential's name (a device's name is in its audit events)
    legacy_tls: str | None = None  # devices: the TLS it can do (none, legacy, modern)


@dataclass(frozen=True)
class CacheSettings:
    size: int = 50_000           # entries per map; the oldest go first
    ttl: float = 300.0           # seconds a snapshot is trusted without a change heard
    verified_ttl: float = 300.0  # seconds a verified password is remembered


class _Bounded(Generic[K, V]):
    """An insertion-ordered map with a size bound and a lifetime per entry."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._size, self._ttl, self._clock = size, ttl, clock

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[1] <= self._clock():
            self._items.pop(key, None)
            return None
        return found[0]

    def put(self, key: K, value: V) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return  # switched off
        self._items.pop(key, None)
        self._items[key] = (value, self._clock() + self._ttl)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def drop(self, keep: Callable[[V], bool]) -> None:
        for key in [k for k, (v, _) in self._items.items() if not keep(v)]:
            del self._items[key]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class CredentialCache:
    """Thread-safe: logins run in executor threads."""

    def __init__(self, channel: InvalidationChannel, settings: CacheSettings = CacheSettings(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._channel = channel
        self._key = secrets.token_bytes(32)  # never leaves this process
        self._generation = 0
        self._app: _Bounded[str, Snapshot] = _Bounded(settings.size, settings.ttl, clock)
        self._passwords: _Bounded[str, Snapshot] = _Bounded(settings.size, settings.ttl, clock)
        self._verified: _Bounded[bytes, Snapshot] = _Bounded(settings.size, settings.verified_ttl, clock)
        channel.subscribe(self.invalidate)

    # ------------------------------------------------------------------ reading

    def fresh(self) -> int:
        """Hear the changes made elsewhere, then the generation to pass to `put_*`."""
        self._channel.check()
        with self._lock:
            return self._generation

    def app_password(self, lookup_key: str) -> Snapshot | None:
        with self._lock:
            return self._app.get(lookup_key)

    def password(self, login: str) -> Snapshot | None:
        with self._lock:
            return self._passwords.get(login)

    def verified(self, login: str, secret: str, snapshot: Snapshot) -> bool:
        """Was this very password checked against this very hash a short while ago?"""
        key = self._verified_key(login, secret, snapshot)
        with self._lock:
            found = self._verified.get(key)
        return found is not None and found.credential_id == snapshot.credential_id

    # ------------------------------------------------------------------ filling

    def put_app_password(self, lookup_key: str, snapshot: Snapshot, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._app.put(lookup_key, snapshot)

    def put_password(self, login: str, snapshot: Snapshot, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._passwords.put(login, snapshot)

    def remember_verified(self, login: str, secret: str, snapshot: Snapshot, generation: int) -> None:
        key = self._verified_key(login, secret, snapshot)
        with self._lock:
            if generation == self._generation:
                self._verified.put(key, snapshot)

    # ------------------------------------------------------------------ forgetting

    def invalidate(self, change: Change) -> None:
        with self._lock:
            self._generation += 1
            maps = (self._app, self._passwords, self._verified)
            for entries in maps:
                if change.everything:
                    entries.clear()
                else:
                    entries.drop(lambda s: s.account_id != change.account_id
                                 and s.credential_id != change.credential_id)

    def sizes(self) -> tuple[int, int, int]:
        with self._lock:
            return len(self._app), len(self._passwords), len(self._verified)

    def _verified_key(self, login: str, secret: str, snapshot: Snapshot) -> bytes:
        material = "\0".join((login, secret, snapshot.secret_hash)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()
