"""The app-password format: `sgp_` + 32 base32 characters of randomness + 7 of CRC32.

160 random bits, a fixed prefix that secret scanners can match
(`sgp_[a-z2-7]{39}`), and a checksum so that a typo or a truncated paste is refused
without touching the database. Stored only as HMAC-SHA256 under the server's key:
verifying costs microseconds, and a stolen database alone cannot be brute-forced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import zlib

PREFIX = "sgp_"
RANDOM_BYTES = 20
BODY_LENGTH = 32   # base32 of 20 bytes, no padding
CHECK_LENGTH = 7   # base32 of a 4-byte CRC32, padding removed
PATTERN = re.compile(rf"^{PREFIX}[a-z2-7]{{{BODY_LENGTH + CHECK_LENGTH}}}$")
_BODY_ALPHABET = re.compile(r"^[a-z2-7]+$")


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _checksum(body: str, prefix: str = PREFIX) -> str:
    crc = zlib.crc32((prefix + body).encode("ascii")).to_bytes(4, "big")
    return _b32(crc)


def generate(prefix: str = PREFIX) -> str:
    """A new secret in this format; other secrets (client secrets, API tokens) pass their prefix."""
    body = _b32(secrets.token_bytes(RANDOM_BYTES))
    return prefix + body + _checksum(body, prefix)


def looks_like_app_password(secret: str) -> bool:
    """True for anything with our prefix: it is then never tried as an account password."""
    return secret.startswith(PREFIX)


def is_well_formed(secret: str, prefix: str = PREFIX) -> bool:
    """Prefix, alphabet, length and checksum all right."""
    if not secret.startswith(prefix) or len(secret) != len(prefix) + BODY_LENGTH + CHECK_LENGTH:
        return False
    body, check = secret[len(prefix):-CHECK_LENGTH], secret[-CHECK_LENGTH:]
    if not _BODY_ALPHABET.match(body + check):
        return False
    return hmac.compare_digest(_checksum(body, prefix), check)


def keyed_hash(key: bytes, secret: str) -> str:
    """HMAC-SHA256 of the secret under the server's key, hex: the stored form and lookup key."""
    return hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def generate_key() -> str:
    """A new server key for the keyed hash, as written to the 0600 key file."""
    return secrets.token_hex(32)
