"""DKIM keys as data, not config: several per domain, rotated without a restart.

The keys live in the data dir (`[deliverability] dkim_dir`, default `dkim/`): one 0600 file
per private key and a manifest, `keys.json`, with each key's domain, selector and state:

    pending   made and to be published; not signing yet
    active    signing (one per domain)
    retiring  replaced; still published until `retire_after`, so mail signed with it in
              transit still verifies
    retired   its DNS record may go; the private key file is deleted

A pending key becomes active only once its record is visible in DNS with the right public
key (`advance`), so receivers never see a signature they cannot check. Writers take an
exclusive lock on the manifest and replace it atomically; the signer re-reads it when its
modification time changes, so `smtpgate dkim rotate` takes effect in a running server.
Keys still named in the TOML (`[delivery.dkim]`) keep signing for domains with no active key
here.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from smtpgate.delivery.dkim import DkimError, DkimKey, DkimSigner, check_selector, generate_key, load_key, txt_record
from smtpgate.mailauth.names import domain_name

__all__ = ["KeyEntry", "Keyring", "KeyringSigner"]

PENDING, ACTIVE, RETIRING, RETIRED = "pending", "active", "retiring", "retired"
PUBLISHED = (PENDING, ACTIVE, RETIRING)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class KeyEntry:
    domain: str
    selector: str
    algorithm: str
    file: str                 # relative to the keyring's folder
    state: str
    created: str
    activated: str = ""
    retire_after: str = ""
    retired: str = ""

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


class Keyring:
    def __init__(self, folder: Path, *, clock: Callable[[], datetime] = _now) -> None:
        self.folder = folder
        self.manifest = folder / "keys.json"
        self.clock = clock

    # ---------------------------------------------------------------- reading

    def entries(self, domain: str | None = None) -> list[KeyEntry]:
        try:
            raw = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise DkimError(f"{self.manifest}: cannot read the DKIM key list: {exc}") from None
        found = [KeyEntry(**item) for item in raw.get("keys", [])]
        if domain is not None:
            domain = _domain(domain)
            found = [e for e in found if e.domain == domain]
        return found

    def load(self, entry: KeyEntry) -> DkimKey:
        return load_key(entry.domain, entry.selector, self.folder / entry.file)

    def active(self) -> dict[str, DkimKey]:
        return {e.domain: self.load(e) for e in self.entries() if e.state == ACTIVE}

    def published(self, domain: str) -> list[tuple[KeyEntry, str, str]]:
        """(entry, DNS name, TXT value) of every key whose record must be in DNS now."""
        rows = []
        for entry in self.entries(domain):
            if entry.state in PUBLISHED:
                name, value = txt_record(self.load(entry))
                rows.append((entry, name, value))
        return rows

    def stamp(self) -> int | None:
        try:
            return self.manifest.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    # ---------------------------------------------------------------- changing

    @contextmanager
    def _locked(self) -> Iterator[list[KeyEntry]]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.folder / ".keys.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self.entries()
            before = list(entries)
            yield entries
            if entries != before:
                tmp = self.manifest.with_suffix(".tmp")
                tmp.write_text(json.dumps({"keys": [asdict(e) for e in entries]}, indent=2) + "\n")
                os.chmod(tmp, 0o600)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, self.manifest)

    def add(self, domain: str, *, selector: str = "", algorithm: str = "rsa", bits: int = 2048) -> KeyEntry:
        """A new pending key: its private file written (0600, never overwritten), its record to publish."""
        domain = _domain(domain)
        with self._locked() as entries:
            taken = {e.selector for e in entries if e.domain == domain}
            if selector:
                check_selector(selector)
                if selector in taken:
                    raise DkimError(f"{domain} has a key with selector {selector!r} already; pick another --selector")
            else:
                selector = self._next_selector(taken)
            key = generate_key(domain, selector, algorithm, rsa_bits=bits)
            name = f"{domain}.{selector}.key"
            path = self.folder / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.private)
                fh.flush()
                os.fsync(fh.fileno())
            entry = KeyEntry(domain, selector, key.algorithm, name, PENDING, self.clock().isoformat())
            entries.append(entry)
        return entry

    def _next_selector(self, taken: set[str]) -> str:
        base = f"sg{self.clock():%Y%m%d}"
        if base not in taken:
            return base
        for suffix in "bcdefghijklmnopqrstuvwxyz":
            if base + suffix not in taken:
                return base + suffix
        raise DkimError("too many keys made today; give --selector")

    def advance(self, domain: str, visible: Callable[[str, str], bool]) -> list[str]:
        """Move the domain's keys on: a pending key whose record `visible(name, value)` becomes
        active (the active one starts retiring), a retiring key past its time is retired.
        Returns what changed, in words."""
        domain = _domain(domain)
        now = self.clock()
        changes: list[str] = []
        with self._locked() as entries:
            for i, entry in enumerate(entries):
                if entry.domain != domain:
                    continue
                if entry.state == RETIRING and entry.retire_after and datetime.fromisoformat(entry.retire_after) <= now:
                    (self.folder / entry.file).unlink(missing_ok=True)
                    entries[i] = replace(entry, state=RETIRED, retired=now.isoformat())
                    changes.append(f"retired {entry.selector}: remove the TXT record {entry.dns_name}")
            pending = [e for e in entries if e.domain == domain and e.state == PENDING]
            for entry in pending[-1:]:
                name, value = txt_record(self.load(entry))
                if not visible(name, value):
                    changes.append(f"waiting for {name} to be visible in DNS")
                    continue
                for i, other in enumerate(entries):
                    if other.domain == domain and other.state in (ACTIVE, PENDING) and other != entry:
                        entries[i] = replace(other, state=RETIRING, retire_after=(now + self._retire_after).isoformat())
                        changes.append(f"{other.selector} stops signing; its record stays published until "
                                       f"{(now + self._retire_after):%Y-%m-%d %H:%M} UTC")
                index = entries.index(entry)
                entries[index] = replace(entry, state=ACTIVE, activated=now.isoformat())
                changes.append(f"{entry.selector} is visible in DNS and signs from now on")
        return changes

    _retire_after = timedelta(days=7)

    def with_retire_after(self, delay: timedelta) -> Keyring:
        self._retire_after = delay
        return self


class KeyringSigner(DkimSigner):
    """A DkimSigner whose keys follow the keyring (checked on every message, re-read on change)."""

    def __init__(self, keyring: Keyring, fallback: dict[str, DkimKey] | None = None) -> None:
        super().__init__(dict(fallback or {}))
        self.keyring = keyring
        self.fallback = dict(fallback or {})
        self._stamp: int | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        stamp = self.keyring.stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            keys = {**self.fallback, **self.keyring.active()}
            self.keys = {d.lower(): k for d, k in keys.items()}
            self._stamp = stamp

    def sign(self, message: bytes, envelope_sender: str = "") -> bytes:
        self.refresh()
        return super().sign(message, envelope_sender)


def _domain(domain: str) -> str:
    try:
        return domain_name(domain)
    except ValueError as exc:
        raise DkimError(f"{exc}; give the From: domain, e.g. example.com") from None


def keyring_from(config) -> Keyring:  # type: ignore[no-untyped-def]
    """The keyring the config names, with its retirement delay."""
    d = config.deliverability
    return Keyring(config.path(d.dkim_dir)).with_retire_after(d.dkim_retire_after)


def signer_from(config) -> KeyringSigner:  # type: ignore[no-untyped-def]
    """Keys of the keyring, plus those still listed in [delivery.dkim]; a bad key fails here."""
    toml = {domain: load_key(domain, k.selector, config.path(k.key_file)) for domain, k in config.delivery.dkim.items()}
    return KeyringSigner(keyring_from(config), toml)
