"""The gateway's own SMTP password for the smarthost, encrypted at rest.

It is a secret like the ones we guard for our users, so it gets the same care: it is
never in the TOML or the database, only in `password_file` as AES-256-GCM ciphertext
(cryptography's AESGCM: tampering is detected, not decrypted into garbage). The 32-byte key is in `key_file` (0600, refused
otherwise) or in $SMTPGATE_UPSTREAM_KEY (base64), so a copy of the data dir's password
file alone reveals nothing. The clear password lives only in memory, wrapped in
`UpstreamPassword` whose repr and str never show it. `smtpgate upstream set-password
--stdin` rotates it; the relay re-reads the file when it changes, no restart needed.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from smtpgate.errors import Kind, OpError

if TYPE_CHECKING:
    from smtpgate.config import Config

__all__ = ["KEY_ENV", "UpstreamCredentialError", "UpstreamPassword", "UpstreamSecretStore"]

KEY_ENV = "SMTPGATE_UPSTREAM_KEY"
MAGIC = b"smtpgate-upstream-v1:"
AAD = b"smtpgate upstream password v1"


class UpstreamCredentialError(OpError):
    """The upstream password cannot be read or written; `code` says which fix applies."""

    code = "upstream-password-unreadable"
    kind = Kind.CONFLICT


class UpstreamPassword:
    """The clear password, in memory only; it never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "UpstreamPassword('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UpstreamPassword) and secrets.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]


@dataclass
class UpstreamSecretStore:
    password_path: Path
    key_path: Path
    environ: dict[str, str] | None = None

    # -------------------------------------------------------------- the key

    def _env(self) -> dict[str, str]:
        return dict(os.environ) if self.environ is None else self.environ

    def key(self, *, create: bool = False) -> bytes:
        """The 32-byte key from the environment or the key file (made when `create`)."""
        from_env = self._env().get(KEY_ENV, "").strip()
        if from_env:
            return _decode_key(from_env, f"${KEY_ENV}")
        try:
            mode = self.key_path.stat().st_mode & 0o777
        except FileNotFoundError:
            if not create:
                raise UpstreamCredentialError(
                    f"the upstream key file {self.key_path} does not exist; setting the password creates it",
                    code="upstream-password-missing", path=str(self.key_path),
                ) from None
            return self._create_key()
        if mode & 0o077:
            raise UpstreamCredentialError(
                f"{self.key_path}: the upstream key file is readable by others (mode {mode:o}); run `chmod 600 {self.key_path}`",
                code="upstream-file-mode", path=str(self.key_path),
            )
        return _decode_key(self.key_path.read_text(encoding="ascii", errors="replace").strip(), str(self.key_path))

    def key_source(self) -> str:
        """Where the key comes from, for `smtpgate upstream show`."""
        return f"${KEY_ENV}" if self._env().get(KEY_ENV, "").strip() else str(self.key_path)

    def _create_key(self) -> bytes:
        key = AESGCM.generate_key(bit_length=256)
        _write_private(self.key_path, base64.b64encode(key) + b"\n", exclusive=True)
        return key

    # --------------------------------------------------------- the password

    def is_set(self) -> bool:
        return self.password_path.exists()

    def stamp(self) -> tuple[int, int] | None:
        """Changes when the password file is replaced (for re-reading on rotation)."""
        try:
            info = self.password_path.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns)

    def set_password(self, password: str) -> None:
        if not password:
            raise UpstreamCredentialError("the upstream password is empty", code="password-required", kind=Kind.INVALID,
                                          field="password")
        key = self.key(create=True)
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, password.encode("utf-8"), AAD)
        _write_private(self.password_path, MAGIC + base64.b64encode(nonce + sealed) + b"\n", exclusive=False)

    def password(self) -> UpstreamPassword:
        try:
            mode = self.password_path.stat().st_mode & 0o777
            raw = self.password_path.read_bytes().strip()
        except FileNotFoundError:
            raise UpstreamCredentialError(
                f"no upstream password is set ({self.password_path} does not exist)",
                code="upstream-password-missing", path=str(self.password_path),
            ) from None
        if mode & 0o077:
            raise UpstreamCredentialError(
                f"{self.password_path}: readable by others (mode {mode:o}); run `chmod 600 {self.password_path}`",
                code="upstream-file-mode", path=str(self.password_path),
            )
        if not raw.startswith(MAGIC):
            raise UpstreamCredentialError(
                f"{self.password_path} is not an smtpgate upstream password file; set the password again",
                path=str(self.password_path),
            )
        try:
            blob = base64.b64decode(raw[len(MAGIC):], validate=True)
            clear = AESGCM(self.key()).decrypt(blob[:12], blob[12:], AAD)
        except (binascii.Error, ValueError, InvalidTag):
            raise UpstreamCredentialError(
                f"{self.password_path} does not decrypt with the upstream key (a different key, or a damaged file); "
                "set the password again", path=str(self.password_path),
            ) from None
        return UpstreamPassword(clear.decode("utf-8"))


def upstream_secrets(config: Config) -> UpstreamSecretStore:
    """The upstream password's encrypted file and its key, as the config names them (for the relay route
    and for the operations that set the password)."""
    r = config.delivery.relay
    return UpstreamSecretStore(config.path(r.password_file), config.path(r.key_file))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise UpstreamCredentialError(
            f"{where}: expected 32 bytes in base64 (make one with `head -c32 /dev/urandom | base64`)"
        )
    return key


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write a 0600 file atomically (temp file, fsync, rename, directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if exclusive and path.exists():
        raise UpstreamCredentialError(f"{path} exists already; not overwriting a key")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if exclusive:
        os.link(tmp, path)  # fails if someone made it meanwhile
        tmp.unlink()
    else:
        os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
