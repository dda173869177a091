"""Account passwords: argon2id hashing and the strength policy.

argon2-cffi does the hashing. The policy combines a minimum length, zxcvbn's score, the
common-password list that zxcvbn already ships (30,000 entries), and optionally a full
Have-I-Been-Pwned SHA-1 file (sorted by hash), searched by bisection on disk so a 30 GB
file is never loaded.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from smtpgate.credentials import imported_hashes
from smtpgate.credentials.errors import PasswordTooLong, WeakPassword

MAX_PASSWORD_LENGTH = 1024  # argon2 copes, but nobody types more; bounds the work per attempt
# zxcvbn refuses longer input (its matching grows faster than linearly), so the strength of a
# longer passphrase is judged on its first 72 characters: a lower bound, since more never
# makes a password weaker.
STRENGTH_PREFIX = 72


@dataclass(frozen=True)
class HashParams:
    memory_kib: int = 19456
    time_cost: int = 2
    parallelism: int = 1


class PasswordHashing:
    """argon2id with operator-set parameters; tells when a stored hash needs upgrading."""

    def __init__(self, params: HashParams) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )

    @cached_property
    def _dummy(self) -> str:
        """Verified when the login is unknown, so that "no such account" costs as much time
        as "wrong password"; made on first use, not by every command that opens the service."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def prepare(self) -> None:
        """Make the dummy hash now (a server does, before its first login)."""
        self._dummy

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        if imported_hashes.is_imported(stored):
            return imported_hashes.verify(stored, password)
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def burn(self, password: str) -> None:
        """Spend the time of one verification, for unknown logins."""
        self.verify(self._dummy, password)

    def needs_rehash(self, stored: str) -> bool:
        if imported_hashes.is_imported(stored):
            return True
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # only when a password is set

    return frozenset(FREQUENCY_LISTS["passwords"])


def in_hibp_file(path: Path, password: str) -> bool:
    """Bisect a Have-I-Been-Pwned 'ordered by hash' file (lines `SHA1:COUNT`)."""
    target = hashlib.sha1(password.encode("utf-8")).hexdigest().upper().encode("ascii")
    with path.open("rb") as fh:
        low, high = 0, os.fstat(fh.fileno()).st_size
        while low < high:
            mid = (low + high) // 2
            fh.seek(mid)
            if mid:
                fh.readline()  # move to the start of the next whole line
            line = fh.readline()
            if not line:
                high = mid
                continue
            digest = line.split(b":", 1)[0].strip().upper()
            if digest == target:
                return True
            if digest < target:
                low = mid + 1
            else:
                high = mid
        fh.seek(low)
        if low:
            fh.readline()
        line = fh.readline()
        return line.split(b":", 1)[0].strip().upper() == target


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 12
    min_strength: int = 3
    hibp_file: Path | None = None

    def check(self, password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
        """Raise WeakPassword listing every rule the password breaks, and how to do better."""
        if len(password) > MAX_PASSWORD_LENGTH:
            raise PasswordTooLong(len(password), MAX_PASSWORD_LENGTH)
        unusable = _unusable(password)
        if unusable:
            raise WeakPassword([unusable], ["Type or paste the password again, as one line of text."])
        reasons: list[str] = []
        suggestions: list[str] = []
        if len(password) < self.min_length:
            reasons.append(f"it has {len(password)} characters, at least {self.min_length} are required")
        if password.lower() in _common_passwords():
            reasons.append("it is on the list of the most common passwords")
        if self.hibp_file and in_hibp_file(self.hibp_file, password):
            reasons.append("it appears in known data breaches (Have I Been Pwned)")
        if password:
            from zxcvbn import zxcvbn

            result = zxcvbn(password[:STRENGTH_PREFIX], user_inputs=list(user_inputs))
            if result["score"] < self.min_strength:
                reasons.append(
                    f"it is too easy to guess (strength {result['score']} of 4, "
                    f"at least {self.min_strength} required)"
                )
                feedback = result.get("feedback") or {}
                if feedback.get("warning"):
                    suggestions.append(str(feedback["warning"]).rstrip(".") + ".")
                suggestions.extend(feedback.get("suggestions") or [])
        if reasons:
            suggestions.append(
                "Use a passphrase of four or more random words, or let smtpgate generate one."
            )
            raise WeakPassword(reasons, suggestions)


def _unusable(password: str) -> str:
    """Why no client could send this password, or "" when one can.

    A lone surrogate has no UTF-8 form; a control character (newline, tab, escape...) cannot
    be typed into a password field, and SASLprep, which SCRAM applies, forbids it.
    """
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid text (it holds a lone surrogate, so it has no UTF-8 form)"
    for char in password:
        if unicodedata.category(char) == "Cc":
            return f"it contains the control character U+{ord(char):04X}, which mail clients cannot send"
    return ""


def generate_password() -> str:
    """A strong random account password (about 144 bits), easy to paste."""
    return secrets.token_urlsafe(18)
