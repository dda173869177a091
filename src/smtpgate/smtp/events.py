"""What the protocol machine reports: events (decision events pause it until answered), the
sentinels `NEED_DATA` and `PAUSED`, and the connection states.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from .replies import Reply

# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


class Event:
    """Base class of everything ``next_event()`` returns besides sentinels."""

    __slots__ = ()


class DecisionEvent(Event):
    """An event that pauses the machine until ``accept()`` or ``reject()``."""

    __slots__ = ()


@dataclass(frozen=True)
class Hello(Event):
    name: str
    extended: bool


@dataclass(frozen=True)
class StartTLS(Event):
    """Start the TLS handshake now, then call ``tls_established()``."""


@dataclass(frozen=True, repr=False)
class AuthAttempt(DecisionEvent):
    """Verify these credentials; SCRAM has no secret, ``proven`` names the key it proved."""

    mechanism: str
    authzid: str
    login: str
    secret: str
    proven: str | None = None

    def __repr__(self) -> str:
        return (
            f"AuthAttempt(mechanism={self.mechanism!r}, authzid={self.authzid!r}, "
            f"login={self.login!r}, secret='<redacted>', proven={self.proven!r})"
        )


@dataclass(frozen=True)
class AuthKeysNeeded(DecisionEvent):
    """Mid-exchange (SCRAM): answer with ``supply_keys(ScramKeys)``, or ``reject()``."""

    mechanism: str
    authzid: str
    login: str


@dataclass(frozen=True)
class AuthAborted(Event):
    """A SASL exchange ended without credentials: cancelled with ``*`` or malformed.

    Already answered (501); the application counts and audits it like a failure.
    ``login`` is known only when the exchange got that far (SCRAM after its first
    message).  ``reason`` is ``cancelled`` or ``malformed``.
    """

    mechanism: str
    reason: Literal["cancelled", "malformed"]
    login: str = ""


@dataclass(frozen=True)
class MailFrom(DecisionEvent):
    address: str
    params: dict[str, str | None] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class RcptTo(DecisionEvent):
    address: str
    params: dict[str, str | None] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class DataStart(DecisionEvent):
    kind: Literal["DATA", "BDAT"]


@dataclass(frozen=True)
class MessageData(Event):
    data: bytes


@dataclass(frozen=True)
class MessageComplete(DecisionEvent):
    pass


@dataclass(frozen=True)
class MessageRejected(Event):
    reply: Reply


@dataclass(frozen=True)
class Reset(Event):
    pass


@dataclass(frozen=True)
class Quit(Event):
    pass


@dataclass(frozen=True)
class ConnectionLost(Event):
    pass


class Sentinel(enum.Enum):
    """What ``next_event()`` returns when it has no event to give."""

    NEED_DATA = "NEED_DATA"  # feed more bytes with receive_data()
    PAUSED = "PAUSED"  # a decision waits for accept()/reject()

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
PAUSED: Final = Sentinel.PAUSED
NeedData: TypeAlias = Literal[Sentinel.NEED_DATA]
Paused: TypeAlias = Literal[Sentinel.PAUSED]


class ProtocolUsageError(RuntimeError):
    """The adapter called the API out of order (never raised for peer input)."""


class State(enum.Enum):
    NEW = "new"  # before start()
    COMMAND = "command"
    AUTH = "auth"  # reading SASL responses
    AUTH_FAILURE = "auth-failure"  # failure challenge sent, waiting for one line
    AUTH_SUCCESS = "auth-success"  # success data sent (334), waiting for an empty line
    DATA = "data"
    BDAT = "bdat"
    TLS_PENDING = "tls-pending"
    CLOSED = "closed"


TRANSITIONS: Final[dict[State, dict[str, State]]] = {
    State.NEW: {"greet": State.COMMAND},
    State.COMMAND: {
        "starttls": State.TLS_PENDING, "challenge": State.AUTH, "sasl-done": State.COMMAND,
        "success-data": State.AUTH_SUCCESS, "failure-data": State.AUTH_FAILURE, "data": State.DATA,
        "chunk": State.BDAT, "data-end": State.COMMAND,  # BDAT LAST: the message ends after its chunk did
    },
    State.AUTH: {"challenge": State.AUTH, "sasl-done": State.COMMAND, "end-sasl": State.COMMAND,
                 "success-data": State.AUTH_SUCCESS, "failure-data": State.AUTH_FAILURE},
    State.AUTH_FAILURE: {"end-sasl": State.COMMAND},
    State.AUTH_SUCCESS: {"end-sasl": State.COMMAND},
    State.DATA: {"data-end": State.COMMAND},
    State.BDAT: {"chunk": State.BDAT, "chunk-end": State.COMMAND},
    State.TLS_PENDING: {"tls-up": State.COMMAND},
    State.CLOSED: {},
}
"""Every move of the machine, in one place: state -> trigger -> next state. Closing is allowed from
any state; anything missing here is a bug in the connection, not in the peer's input."""
