"""Password hashes brought from another server (Dovecot's schemes), verified until replaced.

An imported account keeps the hash it came with, stored as ``{SCHEME}value`` in the
password credential. At the first successful login the password is known, and the
credential service rehashes it to argon2id (``PasswordHashing.needs_rehash`` says so
for every imported hash). So nobody has to reset a password when moving to smtpgate.

The crypt families come from passlib (SHA-512/256/MD5 crypt), bcrypt from bcrypt, the
argon2 variants from argon2-cffi, PBKDF2 and SCRAM from hashlib. Only the salted and
unsalted digests of LDAP's tradition (``{SSHA512}`` = base64(digest(password + salt) +
salt)) are written out here: a digest and a base64 split, which no library wraps.

Schemes that cannot be verified from a password (CRAM-MD5 and DIGEST-MD5 keep an HMAC
state, OTP is a one-time scheme) and DES crypt (eight characters at most, broken) are
refused at import with the reason, never stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["UnsupportedHash", "normalise", "verify", "is_imported", "scheme_of", "SCHEMES"]

_SCHEME = re.compile(r"^\{([A-Z0-9.-]+)\}(.*)$", re.S)
_DIGESTS = {"SHA": "sha1", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512", "LDAP-MD5": "md5"}
_SALTED = {"SSHA": ("sha1", 20), "SSHA256": ("sha256", 32), "SSHA512": ("sha512", 64), "SMD5": ("md5", 16)}
_REFUSED = {
    "CRAM-MD5": "CRAM-MD5 keeps an HMAC state, not a hash a password can be checked against",
    "HMAC-MD5": "HMAC-MD5 keeps an HMAC state, not a hash a password can be checked against",
    "DIGEST-MD5": "DIGEST-MD5 is bound to a realm and cannot be checked for SMTP logins",
    "OTP": "OTP is a one-time password scheme",
    "PLAIN-MD4": "PLAIN-MD4 (NTLM) is too weak to keep",
    "PLAIN-TRUNC": "PLAIN-TRUNC keeps a truncated password",
    "DES-CRYPT": "DES crypt uses only the first 8 characters and is broken",
}
_argon2 = PasswordHasher()


class UnsupportedHash(ValueError):
    """A hash smtpgate cannot keep; the message says why, for the import report."""


@dataclass(frozen=True)
class Scheme:
    name: str
    check: Callable[[str, str], bool]  # (value without the {SCHEME} prefix, password)


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UnsupportedHash("the hash is not valid base64") from None


def _digest(algorithm: str, hex_form: bool = False) -> Callable[[str, str], bool]:
    def check(value: str, password: str) -> bool:
        digest = hashlib.new(algorithm, password.encode()).digest()
        expected = bytes.fromhex(value) if hex_form else _b64(value)
        return hmac.compare_digest(digest, expected)
    return check


def _salted(algorithm: str, size: int) -> Callable[[str, str], bool]:
    def check(value: str, password: str) -> bool:
        raw = _b64(value)
        digest, salt = raw[:size], raw[size:]
        return hmac.compare_digest(hashlib.new(algorithm, password.encode() + salt).digest(), digest)
    return check


def _crypt_handlers() -> tuple[Any, ...]:
    """passlib's crypt families, loaded only when an imported hash is met (not by every command)."""
    from passlib.hash import md5_crypt, sha256_crypt, sha512_crypt

    return sha512_crypt, sha256_crypt, md5_crypt


def _crypt(value: str, password: str) -> bool:
    if value.startswith(("$2y$", "$2a$", "$2b$")):
        import bcrypt

        return bcrypt.checkpw(password.encode()[:72], value.encode())
    for handler in _crypt_handlers():
        if handler.identify(value):
            return bool(handler.verify(password, value))
    if value.startswith("$argon2"):
        return _argon2_check(value, password)
    raise UnsupportedHash(_REFUSED["DES-CRYPT"] if re.fullmatch(r"[./0-9A-Za-z]{13}", value)
                          else "the crypt string is of no known kind")


def _argon2_check(value: str, password: str) -> bool:
    try:
        return _argon2.verify(value, password)
    except (VerificationError, InvalidHashError):
        return False


def _pbkdf2(value: str, password: str) -> bool:
    """Dovecot's own: ``$1$salt$rounds$hex`` of PBKDF2-HMAC-SHA1."""
    parts = value.split("$")
    if len(parts) != 5 or parts[1] != "1" or not parts[3].isdigit():
        raise UnsupportedHash("the PBKDF2 hash is not Dovecot's $1$salt$rounds$hex form")
    derived = hashlib.pbkdf2_hmac("sha1", password.encode(), parts[2].encode(), int(parts[3]), len(parts[4]) // 2)
    return hmac.compare_digest(derived.hex(), parts[4].lower())


def _scram(algorithm: str) -> Callable[[str, str], bool]:
    def check(value: str, password: str) -> bool:
        parts = value.split(",")
        if len(parts) != 4 or not parts[0].isdigit():
            raise UnsupportedHash("the SCRAM hash is not iterations,salt,stored key,server key")
        salted = hashlib.pbkdf2_hmac(algorithm, password.encode(), _b64(parts[1]), int(parts[0]))
        client_key = hmac.new(salted, b"Client Key", algorithm).digest()
        return hmac.compare_digest(hashlib.new(algorithm, client_key).digest(), _b64(parts[2]))
    return check


def _plain(value: str, password: str) -> bool:
    return hmac.compare_digest(value.encode(), password.encode())


SCHEMES: dict[str, Scheme] = {
    **{name: Scheme(name, _digest(algo)) for name, algo in _DIGESTS.items()},
    **{name: Scheme(name, _salted(*spec)) for name, spec in _SALTED.items()},
    "PLAIN-MD5": Scheme("PLAIN-MD5", _digest("md5", hex_form=True)),
    "SHA512-CRYPT": Scheme("SHA512-CRYPT", _crypt),
    "SHA256-CRYPT": Scheme("SHA256-CRYPT", _crypt),
    "MD5-CRYPT": Scheme("MD5-CRYPT", _crypt),
    "MD5": Scheme("MD5", _crypt),  # Dovecot's {MD5} is MD5-crypt ($1$), not a bare digest
    "BLF-CRYPT": Scheme("BLF-CRYPT", _crypt),
    "CRYPT": Scheme("CRYPT", _crypt),
    "ARGON2I": Scheme("ARGON2I", _argon2_check),
    "ARGON2ID": Scheme("ARGON2ID", _argon2_check),
    "PBKDF2": Scheme("PBKDF2", _pbkdf2),
    "SCRAM-SHA-1": Scheme("SCRAM-SHA-1", _scram("sha1")),
    "SCRAM-SHA-256": Scheme("SCRAM-SHA-256", _scram("sha256")),
}
PLAINTEXT = {"PLAIN", "CLEAR", "CLEARTEXT"}


def scheme_of(stored: str) -> str | None:
    match = _SCHEME.match(stored)
    return match.group(1) if match else None


def is_imported(stored: str) -> bool:
    return stored.startswith("{")


def normalise(text: str) -> tuple[str, str | None]:
    """``(stored form, plaintext or None)`` for a hash as another server wrote it.

    A bare crypt string (``$6$...``) gets its scheme named; a plaintext scheme gives the
    password back so that it is hashed with argon2id at once and never stored as such.
    Raises `UnsupportedHash` with the reason for what cannot be kept, after checking that
    the value parses (a wrong length or bad base64 is caught here, not at the first login).
    """
    text = text.strip()
    scheme = scheme_of(text)
    if scheme is None:
        if re.fullmatch(r"[./0-9A-Za-z]{13}", text):
            raise UnsupportedHash(_REFUSED["DES-CRYPT"])
        if not text.startswith("$"):
            raise UnsupportedHash("no {SCHEME} prefix and not a crypt string ($6$, $5$, $2y$, ...)")
        text, scheme = "{CRYPT}" + text, "CRYPT"
    value = text[len(scheme) + 2:]
    if scheme in PLAINTEXT:
        if not value:
            raise UnsupportedHash("the plaintext password is empty")
        return "", value
    if scheme in _REFUSED:
        raise UnsupportedHash(_REFUSED[scheme])
    if scheme not in SCHEMES:
        raise UnsupportedHash(f"the scheme {{{scheme}}} is not one smtpgate can verify")
    _check_shape(scheme, value)
    return text, None


_BCRYPT = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


def _check_shape(scheme: str, value: str) -> None:
    """Parse the value without verifying anything (a bcrypt or argon2 check costs a login's time)."""
    if scheme in ("SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "MD5", "BLF-CRYPT", "CRYPT"):
        if _BCRYPT.match(value) or value.startswith("$argon2"):
            if value.startswith("$argon2"):
                _check_shape("ARGON2ID", value)
            return
        for handler in _crypt_handlers():
            if handler.identify(value):
                try:
                    complete = handler.from_string(value).checksum is not None
                except ValueError:
                    complete = False
                if not complete:
                    raise UnsupportedHash(f"the {scheme} hash is malformed")
                return
        _crypt(value, "")  # raises with the reason: DES, or no known kind
    elif scheme in ("ARGON2I", "ARGON2ID"):
        try:
            extract_parameters(value)
        except InvalidHashError:
            raise UnsupportedHash(f"the {scheme} hash is malformed") from None
    elif scheme in ("PBKDF2", "SCRAM-SHA-1", "SCRAM-SHA-256"):
        SCHEMES[scheme].check(value, "")  # cheap: Dovecot's defaults are a few thousand rounds
    elif scheme in _SALTED:
        algo, size = _SALTED[scheme]
        if len(_b64(value)) <= size:
            raise UnsupportedHash(f"the {scheme} hash is too short to hold a digest and a salt")
    elif scheme in _DIGESTS:
        if len(_b64(value)) != hashlib.new(_DIGESTS[scheme]).digest_size:
            raise UnsupportedHash(f"the {scheme} hash has the wrong length")
    elif scheme == "PLAIN-MD5":
        if not re.fullmatch(r"[0-9a-fA-F]{32}", value):
            raise UnsupportedHash("the PLAIN-MD5 hash is not 32 hex digits")


def verify(stored: str, password: str) -> bool:
    """True when the password matches an imported ``{SCHEME}value``; False for anything else."""
    scheme = scheme_of(stored)
    if scheme is None or scheme not in SCHEMES:
        return False
    try:
        return SCHEMES[scheme].check(stored[len(scheme) + 2:], password)
    except (UnsupportedHash, ValueError):
        return False
