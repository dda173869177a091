"""DKIM signing per sender domain (RFC 6376 rsa-sha256, RFC 8463 ed25519-sha256), via dkimpy.

Keys are files: an RSA key is PEM (PKCS#8, as `cryptography` writes it), an Ed25519 key
is the base64 of its 32-byte seed (the form dkimpy reads). The algorithm follows the
key. The signing domain is the From: header's domain (what DMARC aligns with), or its
nearest parent that has a key; without one the message goes out unsigned. Signing is
CPU work: the worker calls `sign()` in a thread, never on the event loop.
"""

from __future__ import annotations

import base64
import email.utils
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = ["DkimError", "DkimKey", "DkimSigner", "generate_key", "load_key", "txt_record"]

ALGORITHMS = ("ed25519", "rsa")
_SELECTOR = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_FROM = re.compile(rb"(?im)^from:[ \t]*(.*(?:\r?\n[ \t].*)*)")


class DkimError(Exception):
    """A key is missing or unreadable; the message names the file and the fix."""


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str          # "ed25519" or "rsa"
    private: bytes = b""    # what dkimpy takes: PEM, or base64 of the Ed25519 seed

    def __repr__(self) -> str:
        return f"DkimKey(domain={self.domain!r}, selector={self.selector!r}, algorithm={self.algorithm!r})"

    @property
    def signature_algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256"


def check_selector(selector: str) -> str:
    if not _SELECTOR.match(selector):
        raise DkimError(f"{selector!r} is not a valid selector (letters, digits, hyphens and dots)")
    return selector


def load_key(domain: str, selector: str, path: Path) -> DkimKey:
    """Read a key file; refuses one that others can read."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes().strip()
    except OSError as exc:
        raise DkimError(
            f"cannot read the DKIM key for {domain} at {path}: {exc.strerror}; "
            f"make one with `smtpgate dkim keygen {domain}` or fix [delivery.dkim] in the config"
        ) from None
    if mode & 0o077:
        raise DkimError(f"{path}: the DKIM key is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            raise DkimError(f"{path}: not a readable PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimError(f"{path}: a PEM DKIM key must be RSA (Ed25519 keys are stored as a base64 seed)")
        if key.key_size < 1024:
            raise DkimError(f"{path}: RSA keys under 1024 bits are refused by verifiers; make a new one")
        return DkimKey(domain, selector, "rsa", data + b"\n")
    try:
        seed = base64.b64decode(data, validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise DkimError(f"{path}: expected a PEM RSA key or the base64 of a 32-byte Ed25519 seed")
    return DkimKey(domain, selector, "ed25519", data)


def public_key_b64(key: DkimKey) -> str:
    """The p= value of the DNS record."""
    if key.algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(key.private))
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")
    private_rsa = serialization.load_pem_private_key(key.private, password=None)
    der = private_rsa.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def txt_record(key: DkimKey) -> tuple[str, str]:
    """(DNS name, TXT value) to publish for this key."""
    return f"{key.selector}._domainkey.{key.domain}", f"v=DKIM1; k={key.algorithm}; p={public_key_b64(key)}"


def generate_key(domain: str, selector: str, algorithm: str = "ed25519", *, rsa_bits: int = 2048) -> DkimKey:
    """A new key pair, in memory; the caller writes `key.private` to a 0600 file."""
    check_selector(selector)
    if algorithm == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return DkimKey(domain, selector, "ed25519", base64.b64encode(seed) + b"\n")
    if algorithm == "rsa":
        private_rsa = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        pem = private_rsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return DkimKey(domain, selector, "rsa", pem)
    raise DkimError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


def from_domain(message: bytes) -> str | None:
    """The domain of the first From: address in the header section, lowercased."""
    end = message.find(b"\r\n\r\n")
    match = _FROM.search(message if end < 0 else message[: end + 2])
    if not match:
        return None
    _, address = email.utils.parseaddr(match.group(1).decode("utf-8", "replace"))
    _, at, domain = address.rpartition("@")
    return domain.lower().rstrip(".") if at and domain else None


class DkimSigner:
    """Signs with the key of the From: domain (or its nearest parent with one)."""

    def __init__(self, keys: dict[str, DkimKey]) -> None:
        self.keys = {d.lower(): k for d, k in keys.items()}

    def key_for(self, message: bytes, envelope_sender: str = "") -> DkimKey | None:
        candidates = [d for d in (from_domain(message), envelope_sender.rpartition("@")[2].lower()) if d]
        for domain in candidates:
            labels = domain.split(".")
            for i in range(len(labels) - 1):
                key = self.keys.get(".".join(labels[i:]))
                if key is not None:
                    return key
        return None

    def sign(self, message: bytes, envelope_sender: str = "") -> bytes:
        """The message with a DKIM-Signature header in front, or unchanged when no key applies."""
        key = self.key_for(message, envelope_sender)
        if key is None:
            return message
        import dkim  # dkimpy and dnspython: loaded with the first signature, not in every worker

        header = dkim.sign(
            message,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private,
            signature_algorithm=key.signature_algorithm,
            canonicalize=(b"relaxed", b"relaxed"),
        )
        return header + message
