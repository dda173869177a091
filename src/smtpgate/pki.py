"""Local certificate authority and server certificates for `smtpgate init`.

A fresh install needs TLS before it can accept a password, so smtpgate makes
its own small CA and a server certificate signed by it; clients then trust
`ca.pem`. The helpers are general enough for tests and the doctor command to
build expired certificates or certificates for another host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_CERT_NAME",
    "CA_KEY_NAME",
    "SERVER_CERT_NAME",
    "SERVER_KEY_NAME",
    "PkiError",
    "TlsFiles",
    "cert_to_pem",
    "describe_certificate",
    "ensure_local_ca_and_server_cert",
    "generate_key",
    "issue_server_cert",
    "key_to_pem",
    "load_certificate",
    "load_private_key",
    "make_ca",
    "make_local_ca_and_server_cert",
    "make_self_signed_cert",
]

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
SERVER_CERT_NAME = "server.pem"
SERVER_KEY_NAME = "server.key"

CA_DAYS = 3650
CLOCK_SKEW = timedelta(minutes=5)
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")

PrivateKey = ec.EllipticCurvePrivateKey
CertLike = x509.Certificate | bytes
KeyLike = PrivateKey | bytes


class PkiError(Exception):
    """A certificate or key could not be created, read or written."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the TLS material lives. `ca_cert` is None for operator-supplied certs."""

    ca_cert: Path | None
    cert: Path
    key: Path


# --------------------------------------------------------------------------- keys and PEM


def generate_key() -> PrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (the server must start unattended)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (the leaf of a chain)."""
    return _load_certificates(path)[0]


def load_private_key(path: Path) -> PrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted key, no password given
        raise PkiError(f"private key {path} is encrypted; an unencrypted key is needed") from exc
    except ValueError as exc:
        raise PkiError(f"{path} does not contain a usable PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"private key {path} is not an ECDSA key")
    return key


def _coerce_cert(cert: CertLike) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert) if isinstance(cert, bytes) else cert


def _coerce_key(key: KeyLike) -> PrivateKey:
    if not isinstance(key, bytes):
        return key
    loaded = serialization.load_pem_private_key(key, password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise PkiError("CA key is not an ECDSA key")
    return loaded


# --------------------------------------------------------------------------- building


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_names(hostnames: list[str], include_loopback: bool) -> list[x509.GeneralName]:
    """DNS and IP SAN entries, in order, without duplicates."""
    names = list(hostnames) + (list(LOOPBACK_NAMES + LOOPBACK_IPS) if include_loopback else [])
    seen: set[str] = set()
    result: list[x509.GeneralName] = []
    for raw in names:
        name = raw.strip().lower().rstrip(".")
        if not name or name in seen:
            continue
        seen.add(name)
        result.append(_general_name(name))
    return result


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _validate_period(not_before: datetime, not_after: datetime) -> None:
    if not_before.tzinfo is None or not_after.tzinfo is None:
        raise PkiError("certificate validity times must be timezone-aware")
    if not_after <= not_before:
        raise PkiError("certificate not_after must be later than not_before")


def make_ca(
    common_name: str,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed ECDSA P-256 CA that may only sign certificates and CRLs."""
    now = datetime.now(timezone.utc)
    not_before = not_before or now - CLOCK_SKEW
    not_after = not_after or now + timedelta(days=CA_DAYS)
    _validate_period(not_before, not_after)
    key = generate_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _server_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _build_server_cert(
    subject_key: PrivateKey,
    issuer: x509.Name,
    signing_key: PrivateKey,
    hostnames: list[str],
    not_before: datetime,
    not_after: datetime,
    *,
    include_loopback: bool,
) -> x509.Certificate:
    _validate_period(not_before, not_after)
    sans = _general_names(hostnames, include_loopback)
    if not sans:
        raise PkiError("a server certificate needs at least one hostname")
    common_name = hostnames[0].strip() if hostnames and hostnames[0].strip() else "localhost"
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_server_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
        .sign(signing_key, hashes.SHA256())
    )


def issue_server_cert(
    ca_cert: CertLike,
    ca_key: KeyLike,
    hostnames: list[str],
    not_before: datetime,
    not_after: datetime,
    *,
    include_loopback: bool = False,
) -> tuple[bytes, bytes]:
    """Sign a new server certificate; returns (cert_pem, key_pem).

    SANs are exactly `hostnames` (IP literals become IP entries), plus
    localhost/127.0.0.1/::1 when `include_loopback` is set. Any validity
    period is allowed, so tests can make expired or not-yet-valid certs.
    """
    ca = _coerce_cert(ca_cert)
    signing_key = _coerce_key(ca_key)
    key = generate_key()
    cert = _build_server_cert(
        key, ca.subject, signing_key, hostnames, not_before, not_after,
        include_loopback=include_loopback,
    )
    return cert_to_pem(cert), key_to_pem(key)


def make_self_signed_cert(
    path_cert: Path,
    path_key: Path,
    hostname: str | list[str],
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    ca: tuple[CertLike, KeyLike] | None = None,
    overwrite: bool = False,
) -> None:
    """Write a server certificate and key (test and doctor helper).

    Without `ca` the certificate is self-signed; with `ca=(cert, key)` it is
    signed by that CA and `path_cert` holds the chain (leaf, then CA).
    """
    hostnames = [hostname] if isinstance(hostname, str) else list(hostname)
    now = datetime.now(timezone.utc)
    not_before = not_before or now - CLOCK_SKEW
    not_after = not_after or now + timedelta(days=825)
    if ca is None:
        key = generate_key()
        cert = _build_server_cert(
            key, _name(hostnames[0]), key, hostnames, not_before, not_after,
            include_loopback=False,
        )
        cert_pem, key_pem = cert_to_pem(cert), key_to_pem(key)
    else:
        ca_cert = _coerce_cert(ca[0])
        cert_pem, key_pem = issue_server_cert(ca_cert, ca[1], hostnames, not_before, not_after)
        cert_pem += cert_to_pem(ca_cert)
    _write_new(path_key, key_pem, 0o600, overwrite=overwrite)
    _write_new(path_cert, cert_pem, 0o644, overwrite=overwrite)


# --------------------------------------------------------------------------- local CA on disk


def _local_paths(tls_dir: Path) -> dict[str, Path]:
    return {
        "ca_cert": tls_dir / CA_CERT_NAME,
        "ca_key": tls_dir / CA_KEY_NAME,
        "cert": tls_dir / SERVER_CERT_NAME,
        "key": tls_dir / SERVER_KEY_NAME,
    }


def make_local_ca_and_server_cert(
    tls_dir: Path, hostnames: list[str], *, days: int = 825
) -> TlsFiles:
    """Create ca.pem, ca.key, server.pem (leaf + CA) and server.key in `tls_dir`.

    Refuses (PkiError) when any of the four files already exists; use
    `ensure_local_ca_and_server_cert` to keep what is there.
    """
    paths = _local_paths(tls_dir)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing:
        raise PkiError(f"refusing to overwrite existing TLS files: {', '.join(existing)}")
    _make_dir(tls_dir)
    ca_cert, ca_key = make_ca(_ca_common_name(hostnames))
    _write_new(paths["ca_key"], key_to_pem(ca_key), 0o600)
    _write_new(paths["ca_cert"], cert_to_pem(ca_cert), 0o644)
    _issue_local_server(paths, ca_cert, ca_key, hostnames, days)
    return TlsFiles(ca_cert=paths["ca_cert"], cert=paths["cert"], key=paths["key"])


def ensure_local_ca_and_server_cert(
    tls_dir: Path, hostnames: list[str], *, days: int = 825
) -> TlsFiles:
    """Like `make_local_ca_and_server_cert`, but never touches existing files.

    - server.pem and server.key exist: returned untouched (ca_cert is None
      when there is no ca.pem, i.e. the operator brought their own cert);
    - only the CA exists: a new server certificate is issued from it;
    - one of server.pem/server.key exists without the other: PkiError.
    """
    paths = _local_paths(tls_dir)
    has_cert, has_key = paths["cert"].exists(), paths["key"].exists()
    if has_cert and has_key:
        ca = paths["ca_cert"] if paths["ca_cert"].exists() else None
        return TlsFiles(ca_cert=ca, cert=paths["cert"], key=paths["key"])
    if has_cert or has_key:
        present, missing = (
            (paths["cert"], paths["key"]) if has_cert else (paths["key"], paths["cert"])
        )
        raise PkiError(f"{present} exists but {missing} is missing; restore it or remove both")
    if paths["ca_cert"].exists() and paths["ca_key"].exists():
        ca_cert = load_certificate(paths["ca_cert"])
        ca_key = load_private_key(paths["ca_key"])
        _issue_local_server(paths, ca_cert, ca_key, hostnames, days)
        return TlsFiles(ca_cert=paths["ca_cert"], cert=paths["cert"], key=paths["key"])
    return make_local_ca_and_server_cert(tls_dir, hostnames, days=days)


def _issue_local_server(
    paths: dict[str, Path],
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    hostnames: list[str],
    days: int,
) -> None:
    if days < 1:
        raise PkiError("certificate validity must be at least one day")
    now = datetime.now(timezone.utc)
    if ca_cert.not_valid_after_utc <= now + timedelta(days=1):
        raise PkiError(
            f"local CA {paths['ca_cert']} expires {ca_cert.not_valid_after_utc:%Y-%m-%d}; "
            "move ca.pem and ca.key away to create a new one"
        )
    not_after = min(now + timedelta(days=days), ca_cert.not_valid_after_utc)
    cert_pem, key_pem = issue_server_cert(
        ca_cert, ca_key, hostnames, now - CLOCK_SKEW, not_after, include_loopback=True
    )
    _write_new(paths["key"], key_pem, 0o600)
    _write_new(paths["cert"], cert_pem + cert_to_pem(ca_cert), 0o644)


def _ca_common_name(hostnames: list[str]) -> str:
    first = next((h.strip() for h in hostnames if h.strip()), "") or socket.gethostname()
    return f"smtpgate local CA {first}"


# --------------------------------------------------------------------------- describe


def describe_certificate(path: Path) -> dict[str, Any]:
    """Facts about the leaf certificate of a PEM file, for the CLI and doctor.

    Keys: subject, issuer, sans (list of str), serial (hex), not_before and
    not_after (aware UTC datetimes), fingerprint_sha256 (colon hex), is_ca,
    self_signed, chain_length (certificates in the file).
    """
    chain = _load_certificates(path)
    cert = chain[0]
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return {
        "path": str(path),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": _sans(cert),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "fingerprint_sha256": ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        "is_ca": _is_ca(cert),
        "self_signed": cert.issuer == cert.subject,
        "chain_length": len(chain),
    }


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    dns = ext.value.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
    return [*dns, *ips]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# --------------------------------------------------------------------------- file helpers


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise PkiError(f"{what} file {path} does not exist") from exc
    except OSError as exc:
        raise PkiError(f"{what} file {path} cannot be read: {exc.strerror}") from exc


def _load_certificates(path: Path) -> list[x509.Certificate]:
    data = _read(path, "certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError(f"{path} does not contain a PEM certificate") from exc


def _make_dir(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)


def _write_new(path: Path, data: bytes, mode: int, *, overwrite: bool = False) -> None:
    """Write via a temp file, fsync, then link into place (never clobbers unless asked)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError as exc:
        raise PkiError(f"refusing to overwrite existing file {path}") from exc
    finally:
        tmp.unlink(missing_ok=True)
