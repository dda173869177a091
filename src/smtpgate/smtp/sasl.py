"""SASL mechanisms as small sans-I/O state machines.

Why a layer of its own: the SMTP state machine only frames the exchange
(``334`` challenges, base64, ``*`` to cancel, RFC 4954) and never learns how a
mechanism encodes credentials.  Each mechanism turns raw client responses into
one of three steps -- send a challenge, hand credentials to the application,
or give up on a malformed response -- so token mechanisms (XOAUTH2,
OAUTHBEARER) and SCRAM-SHA-256 can be added here later without touching the
protocol module.  Everything is bytes in, steps out: no I/O, no credential
store, no clock.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, TypeAlias

__all__ = [
    "DEFAULT_MECHANISMS",
    "Challenge",
    "LoginMechanism",
    "Malformed",
    "MechanismFactory",
    "PlainMechanism",
    "SaslCredentials",
    "SaslMechanism",
    "SaslStep",
    "decode_response",
    "decode_text",
    "encode_challenge",
]


@dataclass(frozen=True)
class Challenge:
    """Ask the client for another response; ``data`` is sent base64-encoded."""

    data: bytes = b""


@dataclass(frozen=True, repr=False)
class SaslCredentials:
    """The exchange is complete: the application must verify these.

    Token mechanisms set ``secret`` to the token and ``login`` to the user
    named in the token payload.
    """

    authzid: str
    login: str
    secret: str

    def __repr__(self) -> str:
        return (
            f"SaslCredentials(authzid={self.authzid!r}, login={self.login!r}, "
            "secret='<redacted>')"
        )


@dataclass(frozen=True)
class Malformed:
    """The client response cannot be parsed; the exchange is aborted with 501.

    ``text`` is sent to the client, so it must never quote client data.
    """

    text: str = "Invalid SASL response"


SaslStep: TypeAlias = Challenge | SaslCredentials | Malformed


class SaslMechanism(abc.ABC):
    """One server-side SASL exchange; create a fresh instance per AUTH command.

    Token mechanisms fit as they are: parse the token, return credentials
    with the token as ``secret``; a failed token is answered by the
    application with ``reject(reply, challenge=...)``.  A mechanism that
    needs the application in the middle of the exchange (SCRAM-SHA-256 needs
    the stored salt and keys before its second challenge) adds a step type
    here and a matching decision event in the protocol module.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def start(self, initial_response: bytes | None) -> SaslStep:
        """Begin the exchange; ``None`` when the client sent no initial response."""

    @abc.abstractmethod
    def step(self, response: bytes) -> SaslStep:
        """Process the decoded client response to the last challenge."""


MechanismFactory: TypeAlias = Callable[[], SaslMechanism]


def decode_text(data: bytes) -> str | None:
    """Decode a SASL string as strict UTF-8; ``None`` when invalid."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _has_nul(*values: str) -> bool:
    return any("\x00" in value for value in values)


class PlainMechanism(SaslMechanism):
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` in a single response."""

    name: ClassVar[str] = "PLAIN"

    def __init__(self) -> None:
        self._done = False

    def start(self, initial_response: bytes | None) -> SaslStep:
        if initial_response is None:
            return Challenge(b"")
        return self.step(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._done:
            return Malformed("Unexpected PLAIN response")
        self._done = True
        return parse_plain(response)


def parse_plain(message: bytes) -> SaslStep:
    """Split a PLAIN message into credentials (authcid and passwd non-empty)."""
    fields = message.split(b"\x00")
    if len(fields) != 3:
        return Malformed("Invalid PLAIN response")
    decoded = [decode_text(field) for field in fields]
    if any(value is None for value in decoded):
        return Malformed("Invalid UTF-8 in PLAIN response")
    authzid, login, secret = (value or "" for value in decoded)
    if not login or not secret:
        return Malformed("Invalid PLAIN response")
    return SaslCredentials(authzid=authzid, login=login, secret=secret)


class LoginMechanism(SaslMechanism):
    """The de-facto LOGIN mechanism: prompt ``Username:`` then ``Password:``."""

    name: ClassVar[str] = "LOGIN"
    USERNAME_PROMPT: ClassVar[bytes] = b"Username:"
    PASSWORD_PROMPT: ClassVar[bytes] = b"Password:"

    def __init__(self) -> None:
        self._login: str | None = None
        self._done = False

    def start(self, initial_response: bytes | None) -> SaslStep:
        if initial_response is None:
            return Challenge(self.USERNAME_PROMPT)
        return self.step(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._done:
            return Malformed("Unexpected LOGIN response")
        if self._login is None:
            return self._take_login(response)
        self._done = True
        return self._take_password(self._login, response)

    def _take_login(self, response: bytes) -> SaslStep:
        login = decode_text(response)
        if login is None:
            self._done = True
            return Malformed("Invalid UTF-8 in LOGIN response")
        if not login or _has_nul(login):
            self._done = True
            return Malformed("Invalid LOGIN username")
        self._login = login
        return Challenge(self.PASSWORD_PROMPT)

    @staticmethod
    def _take_password(login: str, response: bytes) -> SaslStep:
        secret = decode_text(response)
        if secret is None:
            return Malformed("Invalid UTF-8 in LOGIN response")
        if not secret or _has_nul(secret):
            return Malformed("Invalid LOGIN password")
        return SaslCredentials(authzid="", login=login, secret=secret)


DEFAULT_MECHANISMS: Mapping[str, MechanismFactory] = MappingProxyType(
    {
        PlainMechanism.name: PlainMechanism,
        LoginMechanism.name: LoginMechanism,
    }
)
"""Mechanism name -> factory.  New mechanisms are registered here."""


def encode_challenge(data: bytes) -> str:
    """Base64 text for a ``334`` line (empty data gives an empty string)."""
    return base64.b64encode(data).decode("ascii")


def decode_response(line: bytes) -> bytes | None:
    """Strictly decode one base64 client response; ``None`` when invalid.

    An empty line is a valid empty response (RFC 4954 section 4).
    """
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
