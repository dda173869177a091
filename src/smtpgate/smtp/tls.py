"""TLS server contexts with a hot-reloadable certificate.

Passwords only ever cross the wire inside TLS, so the context is strict
(TLS 1.2+, AEAD ciphers, no renegotiation), its errors say which file is
wrong, and certificates can be renewed on SIGHUP without a restart.
"""

from __future__ import annotations

import ssl
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = [
    "TLS12_CIPHERS",
    "ReloadableTlsContext",
    "TlsConfigError",
    "describe_tls",
    "legacy_server_context",
    "server_context",
]

# TLS 1.3 suites are all AEAD and configured separately by OpenSSL.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
# The legacy listener: the modern suites first, then the CBC suites TLS 1.0/1.1 clients have;
# security level 0 because OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1 signatures) above it.
LEGACY_CIPHERS = TLS12_CIPHERS + ":ECDHE+AES:AES:!aNULL:!eNULL:!MD5:!RC4:!3DES:@SECLEVEL=0"


class TlsConfigError(Exception):
    """The certificate or key cannot be used; the message names the file."""


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS server context for the certificate chain and key at the given paths."""
    context = _base_context()
    _load_cert_chain(context, Path(cert_path), Path(key_path))
    return context


def legacy_server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """The legacy listener's own context: TLS 1.0 and 1.1 too, at OpenSSL security level 0.

    For printers and scanners that stop at TLS 1.0. It is built apart from `server_context`
    and used by that listener alone, so 587 and 465 keep TLS 1.2+ with AEAD ciphers.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # TLSVersion.TLSv1 is deprecated: here it is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(LEGACY_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.verify_mode = ssl.CERT_NONE
    _load_cert_chain(context, Path(cert_path), Path(key_path))
    return context


def _base_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.verify_mode = ssl.CERT_NONE  # clients authenticate with passwords, not certs
    return context


def _refuse_password() -> NoReturn:
    # Without a callback OpenSSL would prompt on the terminal and hang the server.
    raise TlsConfigError("encrypted private key")


def _load_cert_chain(context: ssl.SSLContext, cert_path: Path, key_path: Path) -> None:
    try:
        context.load_cert_chain(cert_path, key_path, password=_refuse_password)
    except (OSError, ssl.SSLError, TlsConfigError) as exc:
        raise TlsConfigError(_diagnose(cert_path, key_path, exc)) from None


# --------------------------------------------------------------------------- diagnosis


def _diagnose(cert_path: Path, key_path: Path, exc: BaseException) -> str:
    """Explain a failed load in terms of files; never include file contents."""
    problem = _cert_problem(cert_path) or _key_problem(key_path)
    if problem:
        return problem
    if _mismatch(cert_path, key_path) or "KEY_VALUES_MISMATCH" in str(exc):
        return f"TLS private key {key_path} does not match the certificate in {cert_path}"
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return f"TLS certificate {cert_path} / key {key_path} rejected by OpenSSL ({reason})"


def _read(path: Path, what: str) -> tuple[bytes | None, str | None]:
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, f"TLS {what} file {path} does not exist"
    except IsADirectoryError:
        return None, f"TLS {what} file {path} is a directory"
    except OSError as exc:
        return None, f"TLS {what} file {path} cannot be read: {exc.strerror}"


def _cert_problem(cert_path: Path) -> str | None:
    data, problem = _read(cert_path, "certificate")
    if data is None:
        return problem
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return f"TLS certificate file {cert_path} does not contain a valid PEM certificate"
    return None


def _key_problem(key_path: Path) -> str | None:
    data, problem = _read(key_path, "private key")
    if data is None:
        return problem
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        return f"TLS private key {key_path} is encrypted; smtpgate needs an unencrypted key"
    except ValueError:
        return f"TLS private key file {key_path} does not contain a valid PEM private key"
    except Exception:  # noqa: BLE001 - unsupported algorithms and the like
        return f"TLS private key file {key_path} contains an unsupported private key"
    return None


def _mismatch(cert_path: Path, key_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except Exception:  # noqa: BLE001 - any unreadable pair is "does not match"
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki)


# --------------------------------------------------------------------------- reloading


class ReloadableTlsContext:
    """The current server context; `reload()` swaps in a new one atomically.

    Every context built here carries an SNI hook that moves each new
    handshake onto the newest context, so a listener created once with
    `.context` (implicit TLS on 465) also serves the renewed certificate.
    STARTTLS should read `.context` per connection. Connections already
    established keep the context they started with.
    """

    def __init__(
        self,
        cert_path: Path,
        key_path: Path,
        *,
        factory: Callable[[Path, Path], ssl.SSLContext] = server_context,
    ) -> None:
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self._factory = factory
        self._lock = threading.Lock()
        self._context = self._build()  # startup failure propagates
        self.generation = 1

    @property
    def context(self) -> ssl.SSLContext:
        return self._context

    def reload(self) -> ssl.SSLContext:
        """Re-read the files and swap; on TlsConfigError the old context stays."""
        with self._lock:
            new = self._build()
            self._context = new
            self.generation += 1
            return new

    def _build(self) -> ssl.SSLContext:
        context = self._factory(self.cert_path, self.key_path)
        context.sni_callback = self._select_current
        return context

    def _select_current(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object
    ) -> None:
        current = self._context
        if ssl_object.context is not current:
            ssl_object.context = current


# --------------------------------------------------------------------------- description


def describe_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """Protocol and cipher of a finished handshake, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"."""
    if ssl_object is None:
        return ""
    version = ssl_object.version() or ""
    cipher = ssl_object.cipher()
    name = cipher[0] if cipher else ""
    return " ".join(part for part in (version, name) if part)
