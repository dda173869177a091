"""Keys every node needs, kept in the database sealed under one master key file.

In a cluster the token signing keys (`[tokens] key_dir`), the DKIM keyring
(`[deliverability] dkim_dir`), the upstream password and its key (`[delivery.relay]`)
and the app-password key (`[secrets]`) must be the same on every node. They stay files
on each node, where the code that uses them already reads them (and notices a change by
their modification time); the database holds the reference copy of each, encrypted with
AES-GCM under the cluster's master key (`[cluster] master_key_file`), the file's name as
associated data so that no sealed blob can be passed off as another file:

- `pull()` writes every sealed file whose content differs from the local copy
  (atomically, 0600): when a node starts, and every heartbeat;
- `push()` seals every local file the database does not hold yet or holds with other
  content: when a node starts, every heartbeat, and when a command that may have changed
  a key (`dkim rotate`, `token rotate-key`, `upstream set-password`) closes its runtime.

So a new node needs its config and the master key file, nothing else. The database never
sees a key in clear, and a database backup without the master key reveals none.

Why files plus a mirror rather than keys read from the database by each user: the three
key stores already handle rotation, re-reading and permissions; mirroring keeps one code
path for one machine and many, and a node keeps signing from its local copies while the
database is unreachable. Deletions are not mirrored: a retired key file removed on one
node comes back from the database on another, where it is never used again (its
manifest or its `retired` time says so).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from smtpgate.config import Config, ConfigError
from smtpgate.store import Store
from smtpgate.store.models_cluster import SealedSecretRow

log = logging.getLogger("smtpgate.cluster")

MAX_FILE = 1 << 20  # key files are small; anything bigger is not one of ours


def load_master_key(path: Path, *, create: bool) -> bytes:
    """32 bytes from a 0600 file (base64); made when `create` (the first node)."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"{path}: the cluster master key file is missing, and the database holds keys sealed under it. "
                "Copy it from another node (the same file on every node), mode 0600."
            ) from None
        key = AESGCM.generate_key(bit_length=256)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64encode(key) + b"\n")
        log.info("made the cluster master key %s: copy it to every node", path)
        return key
    if mode & 0o077:
        raise ConfigError(f"{path}: the cluster master key file is readable by others (mode {mode:o}); "
                          f"run `chmod 600 {path}`.")
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"{path}: not a cluster master key (expected 32 bytes in base64).")
    return key


def key_files(config: Config) -> dict[str, Path]:
    """Name in the database -> local path, for every key a cluster shares."""
    relay = config.delivery.relay
    found = {
        "secrets/app-password.key": config.path(config.secrets.app_password_key_file),
        "upstream/password": config.path(relay.password_file),
        "upstream/key": config.path(relay.key_file),
    }
    for prefix, folder in (("tokens", config.path(config.tokens.key_dir)),
                           ("dkim", config.path(config.deliverability.dkim_dir))):
        found[f"{prefix}/"] = folder  # a folder: every file in it
    return found


class SealedFiles:
    def __init__(self, store: Store, key: bytes, files: dict[str, Path]) -> None:
        self._store = store
        self._aead = AESGCM(key)
        self._files = files

    def _local(self) -> Iterator[tuple[str, Path]]:
        for name, path in self._files.items():
            if name.endswith("/"):
                if path.is_dir():
                    for child in sorted(path.rglob("*")):
                        if child.is_file() and not child.name.startswith(".") and not child.name.endswith(".tmp"):
                            yield name + child.relative_to(path).as_posix(), child
            elif path.is_file():
                yield name, path

    def _path_of(self, name: str) -> Path | None:
        for prefix, path in self._files.items():
            if prefix.endswith("/") and name.startswith(prefix):
                relative = name[len(prefix):]
                if not relative or ".." in Path(relative).parts or Path(relative).is_absolute():
                    return None
                return path / relative
            if name == prefix:
                return path
        return None

    def _sealed(self) -> dict[str, tuple[bytes, float]]:
        """name -> (content, when it was sealed, epoch seconds)."""
        with self._store.session() as db:
            rows = list(db.execute(select(SealedSecretRow.name, SealedSecretRow.nonce, SealedSecretRow.ciphertext,
                                          SealedSecretRow.updated_at)))
        opened: dict[str, tuple[bytes, float]] = {}
        for name, nonce, ciphertext, updated_at in rows:
            try:
                opened[name] = (self._aead.decrypt(nonce, ciphertext, name.encode()), updated_at.timestamp())
            except InvalidTag:
                raise ConfigError(
                    f"the key {name!r} in the database does not open with this node's cluster master key: "
                    "every node needs the same master key file."
                ) from None
        return opened

    def is_empty(self) -> bool:
        with self._store.session() as db:
            return db.scalar(select(SealedSecretRow.name).limit(1)) is None

    def pull(self) -> list[str]:
        """Write the sealed files that differ here and are newer than the local copy; the
        names written. The copy gets the sealed time as its mtime, so push() leaves it be."""
        written = []
        for name, (content, sealed_at) in self._sealed().items():
            path = self._path_of(name)
            if path is None:
                continue
            try:
                if path.read_bytes() == content or path.stat().st_mtime > sealed_at:
                    continue  # the same, or changed here since (push() seals it)
            except FileNotFoundError:
                pass
            _write_private(path, content)
            os.utime(path, (sealed_at, sealed_at))
            written.append(name)
        if written:
            log.info("keys from the cluster: %s", ", ".join(written))
        return written

    def push(self) -> list[str]:
        """Seal the local files the database lacks, or holds with other, older content."""
        sealed = self._sealed()
        changed = []
        for name, path in self._local():
            try:
                content, mtime = path.read_bytes(), path.stat().st_mtime
            except OSError:
                continue
            known = sealed.get(name)
            if len(content) > MAX_FILE or (known is not None and (known[0] == content or known[1] >= mtime)):
                continue
            changed.append((name, content, mtime))
        if not changed:
            return []
        with self._store.session() as db:
            for name, content, mtime in changed:
                nonce = secrets.token_bytes(12)
                values = dict(name=name, nonce=nonce, ciphertext=self._aead.encrypt(nonce, content, name.encode()),
                              updated_at=datetime.fromtimestamp(mtime, timezone.utc))
                db.execute(pg_insert(SealedSecretRow).values(**values).on_conflict_do_update(
                    index_elements=["name"], set_={k: v for k, v in values.items() if k != "name"}))
        names = [name for name, _, _ in changed]
        log.info("keys sealed into the cluster: %s", ", ".join(names))
        return names

    def sync(self) -> None:
        """Pull, then push what is only here (a node that had keys before it joined)."""
        self.pull()
        self.push()


def _write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{hashlib.sha256(os.urandom(8)).hexdigest()[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_sealed(store: Store, config: Config) -> SealedFiles:
    """The node's mirror of the cluster's keys; the first node makes the master key."""
    files = SealedFiles(store, b"\0" * 32, key_files(config))
    key = load_master_key(config.path(config.cluster.master_key_file), create=files.is_empty())
    return SealedFiles(store, key, files._files)
