"""SASL mechanisms as small sans-I/O state machines.

Why a layer of its own: the SMTP state machine only frames the exchange
(``334`` challenges, base64, ``*`` to cancel, RFC 4954) and never learns how a
mechanism encodes credentials.  Each mechanism turns raw client responses into
one of four steps -- send a challenge, hand credentials to the application,
ask the application for stored keys mid-exchange (SCRAM), or give up on a
malformed response.  Everything is bytes in, steps out: no I/O, no credential
store, no clock.

Mechanisms here: PLAIN (RFC 4616), LOGIN, XOAUTH2 (the Google and Microsoft
format), OAUTHBEARER (RFC 7628) and SCRAM-SHA-256 (RFC 5802, RFC 7677).  The
stored SCRAM keys are looked up by the application between the client's first
message and the server's first challenge (``NeedKeys``), so the exchange is a
state machine here rather than a synchronous library callback.
"""

from __future__ import annotations

import abc
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
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
    "NeedKeys",
    "OAuthBearerMechanism",
    "PlainMechanism",
    "SaslCredentials",
    "SaslMechanism",
    "SaslStep",
    "ScramCandidate",
    "ScramKeys",
    "ScramSha256Mechanism",
    "XOAuth2Mechanism",
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
    named in the SASL payload (may be empty for OAUTHBEARER without ``a=``).
    SCRAM never sees the password: ``secret`` is empty and ``proven`` names
    the stored key (``ScramCandidate.ref``) the client proved it holds, or is
    ``None`` when its proof matched none.
    """

    authzid: str
    login: str
    secret: str
    proven: str | None = None

    def __repr__(self) -> str:
        return (
            f"SaslCredentials(authzid={self.authzid!r}, login={self.login!r}, "
            f"secret='<redacted>', proven={self.proven!r})"
        )


@dataclass(frozen=True)
class NeedKeys:
    """Mid-exchange: look up the stored SCRAM keys of ``login``, then ``supply()`` them."""

    authzid: str
    login: str


@dataclass(frozen=True, repr=False)
class ScramCandidate:
    """The SCRAM keys of one stored credential; ``ref`` is the application's name for it."""

    ref: str
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:
        return f"ScramCandidate(ref={self.ref!r}, keys='<redacted>')"


@dataclass(frozen=True)
class ScramKeys:
    """What the application supplies: one salt and iteration count, any number of keys.

    Every credential of a login shares the salt, so a client's proof can be
    checked against each of them (an account password or any app password).
    No candidates (an unknown login) still yields a normal-looking exchange.
    """

    salt: bytes
    iterations: int
    candidates: tuple[ScramCandidate, ...] = ()


@dataclass(frozen=True)
class Malformed:
    """The client response cannot be parsed; the exchange is aborted with 501.

    ``text`` is sent to the client, so it must never quote client data.
    """

    text: str = "Invalid SASL response"


SaslStep: TypeAlias = Challenge | SaslCredentials | Malformed | NeedKeys


class SaslMechanism(abc.ABC):
    """One server-side SASL exchange; create a fresh instance per AUTH command.

    Token mechanisms parse the token and return credentials with the token
    as ``secret``; their ``failure_challenge()`` is the JSON error the
    protocol sends before the failure reply (RFC 7628).  SCRAM-SHA-256 needs
    the stored salt and keys before its second challenge: it returns
    ``NeedKeys`` (the protocol's ``AuthKeysNeeded`` decision), continues in
    ``supply()``, and has ``success_data()`` to send before 235.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def start(self, initial_response: bytes | None) -> SaslStep:
        """Begin the exchange; ``None`` when the client sent no initial response."""

    @abc.abstractmethod
    def step(self, response: bytes) -> SaslStep:
        """Process the decoded client response to the last challenge."""

    def supply(self, keys: ScramKeys) -> SaslStep:
        """Continue after ``NeedKeys`` with the stored keys (SCRAM only)."""
        return Malformed("Unexpected keys")

    def success_data(self) -> bytes | None:
        """Data the server must send before 235 (RFC 4954: as a 334), if any."""
        return None

    def failure_challenge(self) -> bytes | None:
        """The error challenge to send before a failure reply (RFC 7628), if any."""
        return None


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


# --------------------------------------------------------------------------
# Bearer tokens: XOAUTH2 and OAUTHBEARER (RFC 7628)
# --------------------------------------------------------------------------

_KV_SEPARATOR = b"\x01"


def _kvpairs(data: bytes) -> dict[str, str] | None:
    """``key=value`` pairs separated by ^A, ended by ^A^A; ``None`` when malformed."""
    if not data.endswith(_KV_SEPARATOR * 2):
        return None
    pairs: dict[str, str] = {}
    for item in data[:-2].split(_KV_SEPARATOR):
        if not item:
            continue
        text = decode_text(item)
        if text is None or "=" not in text:
            return None
        key, _, value = text.partition("=")
        if not key.isalpha() or key in pairs:
            return None
        pairs[key] = value
    return pairs


def _bearer(value: str | None) -> str | None:
    """The token of an ``auth=Bearer <token>`` value (the scheme is case-insensitive)."""
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token


class _BearerMechanism(SaslMechanism):
    """One client message carrying a bearer token; a JSON error challenge on failure."""

    ERROR: ClassVar[dict[str, str]]

    def __init__(self) -> None:
        self._done = False

    def start(self, initial_response: bytes | None) -> SaslStep:
        if initial_response is None:
            return Challenge(b"")
        return self.step(initial_response)

    def step(self, response: bytes) -> SaslStep:
        if self._done:
            return Malformed(f"Unexpected {self.name} response")
        self._done = True
        return self._parse(response)

    @abc.abstractmethod
    def _parse(self, message: bytes) -> SaslStep: ...

    def failure_challenge(self) -> bytes | None:
        return json.dumps(self.ERROR, separators=(",", ":")).encode("ascii")


class XOAuth2Mechanism(_BearerMechanism):
    """``user=<login>^Aauth=Bearer <token>^A^A`` (Google's and Microsoft's XOAUTH2)."""

    name: ClassVar[str] = "XOAUTH2"
    ERROR: ClassVar[dict[str, str]] = {"status": "401", "schemes": "bearer"}

    def _parse(self, message: bytes) -> SaslStep:
        pairs = _kvpairs(message)
        if pairs is None:
            return Malformed("Invalid XOAUTH2 response")
        login = pairs.get("user", "")
        token = _bearer(pairs.get("auth"))
        if not login or _has_nul(login) or token is None:
            return Malformed("Invalid XOAUTH2 response")
        return SaslCredentials(authzid="", login=login, secret=token)


def _saslname(value: str) -> str | None:
    """Undo RFC 5801 escaping (``=2C`` is a comma, ``=3D`` an equals sign)."""
    rest = value.replace("=2C", "").replace("=3D", "")
    if "=" in rest or "," in rest:
        return None
    return value.replace("=2C", ",").replace("=3D", "=")


def _gs2_header(header: str) -> tuple[str, str] | Malformed:
    """Parse ``flag,[a=authzid],`` into (flag, authzid); channel binding is refused."""
    flag, comma, rest = header.partition(",")
    if not comma or not rest.endswith(","):
        return Malformed("Invalid GS2 header")
    if flag.startswith("p="):
        return Malformed("Channel binding is not supported")
    if flag not in ("n", "y"):
        return Malformed("Invalid GS2 header")
    authzid_field = rest[:-1]
    if not authzid_field:
        return flag, ""
    if not authzid_field.startswith("a=") or len(authzid_field) == 2:
        return Malformed("Invalid GS2 header")
    authzid = _saslname(authzid_field[2:])
    if authzid is None:
        return Malformed("Invalid GS2 header")
    return flag, authzid


class OAuthBearerMechanism(_BearerMechanism):
    """RFC 7628: ``n,a=<login>,^Ahost=..^Aport=..^Aauth=Bearer <token>^A^A``.

    The login is the GS2 authzid; without one it is empty and the token
    alone names the user.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    ERROR: ClassVar[dict[str, str]] = {"status": "invalid_token", "schemes": "bearer"}

    def _parse(self, message: bytes) -> SaslStep:
        head, separator, rest = message.partition(_KV_SEPARATOR)
        header = decode_text(head)
        if not separator or header is None:
            return Malformed("Invalid OAUTHBEARER response")
        parsed = _gs2_header(header)
        if isinstance(parsed, Malformed):
            return parsed
        _, authzid = parsed
        pairs = _kvpairs(_KV_SEPARATOR + rest)
        token = _bearer(pairs.get("auth")) if pairs is not None else None
        if token is None or _has_nul(authzid):
            return Malformed("Invalid OAUTHBEARER response")
        return SaslCredentials(authzid=authzid, login=authzid, secret=token)


# --------------------------------------------------------------------------
# SCRAM-SHA-256 (RFC 5802, RFC 7677)
# --------------------------------------------------------------------------


_SCRAM_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except ","


def _scram_attributes(text: str) -> list[tuple[str, str]] | None:
    """``a=value,b=value`` as ordered pairs; ``None`` when an attribute is malformed."""
    pairs = []
    for item in text.split(","):
        if len(item) < 2 or item[1] != "=" or not item[0].isalpha():
            return None
        pairs.append((item[0], item[2:]))
    return pairs


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


class ScramSha256Mechanism(SaslMechanism):
    """SCRAM-SHA-256 without channel binding; the keys come from the application.

    client-first -> ``NeedKeys(login)`` -> ``supply(keys)`` -> server-first
    challenge -> client-final -> ``SaslCredentials(proven=ref or None)``; on
    success the server-final (``v=...``) is sent before 235 (``success_data``).
    ``server_nonce`` is for tests that need a fixed transcript.

    The RFC 5802 arithmetic is done here (two HMACs and a hash per candidate)
    rather than in scramp because scramp refuses any authorization identity,
    while RFC 5802 allows one and GSASL clients (mutt) always send it; whether
    it may differ from the login is the application's decision, not ours.
    The server-first message costs the same whatever the keys are: it is one
    string built from the salt and count, never one per stored key.
    """

    name: ClassVar[str] = "SCRAM-SHA-256"

    def __init__(self, *, server_nonce: str | None = None) -> None:
        self._nonce = server_nonce
        self._stage = "client-first"
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._authzid = ""
        self._login = ""
        self._candidates: tuple[ScramCandidate, ...] = ()
        self._server_final: bytes | None = None

    def start(self, initial_response: bytes | None) -> SaslStep:
        if initial_response is None:
            return Challenge(b"")
        return self.step(initial_response)

    def step(self, response: bytes) -> SaslStep:
        stage, self._stage = self._stage, "done"
        if stage == "client-first":
            return self._take_client_first(response)
        if stage == "client-final":
            return self._take_client_final(response)
        return Malformed("Unexpected SCRAM response")

    def _take_client_first(self, message: bytes) -> SaslStep:
        text = decode_text(message)
        if text is None or text.count(",") < 3:
            return Malformed("Invalid SCRAM client-first message")
        flag_end = text.index(",")
        header_end = text.index(",", flag_end + 1)
        parsed = _gs2_header(text[: header_end + 1])
        if isinstance(parsed, Malformed):
            return parsed
        bare = text[header_end + 1 :]
        attributes = _scram_attributes(bare)
        if attributes is None or len(attributes) < 2 or [k for k, _ in attributes[:2]] != ["n", "r"]:
            return Malformed("Invalid SCRAM client-first message")  # also a leading m= (RFC 5802 5.1)
        login = _saslname(attributes[0][1])
        if not login or _has_nul(login) or _has_nul(parsed[1]):
            return Malformed("Invalid SCRAM username")
        if not _SCRAM_NONCE.fullmatch(attributes[1][1]):
            return Malformed("Invalid SCRAM client-first message")
        self._gs2_header, self._client_first_bare = text[: header_end + 1], bare
        self._authzid, self._login = parsed[1], login
        self._stage = "keys"
        return NeedKeys(authzid=parsed[1], login=login)

    def supply(self, keys: ScramKeys) -> SaslStep:
        if self._stage != "keys":
            return Malformed("Unexpected keys")
        if keys.iterations < 1 or not keys.salt:
            self._stage = "done"
            return Malformed("Invalid SCRAM keys")
        client_nonce = dict(_scram_attributes(self._client_first_bare) or ())["r"]
        nonce = client_nonce + (self._nonce or secrets.token_urlsafe(24))
        salt = base64.b64encode(keys.salt).decode("ascii")
        self._server_first = f"r={nonce},s={salt},i={keys.iterations}"
        # No stored key (an unknown login): a random one the proof can never
        # match, so the last step does the same work either way.
        self._candidates = keys.candidates or (
            ScramCandidate("", secrets.token_bytes(32), secrets.token_bytes(32)),
        )
        self._stage = "client-final"
        return Challenge(self._server_first.encode("utf-8"))

    def _take_client_final(self, message: bytes) -> SaslStep:
        text = decode_text(message)
        without_proof, separator, proof_text = (text or "").rpartition(",p=")
        attributes = _scram_attributes(without_proof) if separator else None
        if attributes is None or len(attributes) < 2 or [k for k, _ in attributes[:2]] != ["c", "r"]:
            return Malformed("Invalid SCRAM client-final message")
        expected_binding = base64.b64encode(self._gs2_header.encode("utf-8")).decode("ascii")
        if not hmac.compare_digest(attributes[0][1].encode(), expected_binding.encode()):
            return Malformed("Invalid SCRAM channel binding")
        nonce = self._server_first[2 : self._server_first.index(",")]
        if not hmac.compare_digest(attributes[1][1].encode(), nonce.encode()):
            return Malformed("Invalid SCRAM client-final message")
        proof = decode_response(proof_text.encode("ascii", "replace"))
        if proof is None or len(proof) != hashlib.sha256().digest_size:
            return Malformed("Invalid SCRAM client-final message")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        proven: str | None = None
        for candidate in self._candidates:  # every one is checked: the count of matches is at most one
            signature = _hmac(candidate.stored_key, auth_message)
            client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
            if hmac.compare_digest(hashlib.sha256(client_key).digest(), candidate.stored_key) and candidate.ref:
                proven = proven or candidate.ref
                if self._server_final is None:
                    verifier = base64.b64encode(_hmac(candidate.server_key, auth_message)).decode("ascii")
                    self._server_final = f"v={verifier}".encode("ascii")
        return SaslCredentials(authzid=self._authzid, login=self._login, secret="", proven=proven)

    def success_data(self) -> bytes | None:
        return self._server_final


DEFAULT_MECHANISMS: Mapping[str, MechanismFactory] = MappingProxyType(
    {
        PlainMechanism.name: PlainMechanism,
        LoginMechanism.name: LoginMechanism,
        ScramSha256Mechanism.name: ScramSha256Mechanism,
        XOAuth2Mechanism.name: XOAuth2Mechanism,
        OAuthBearerMechanism.name: OAuthBearerMechanism,
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
