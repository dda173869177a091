"""What the audit records: one event per AUTH attempt and per message decision.

An event holds the login as given, never the secret: a secret pasted into the login field
is replaced by its prefix and a keyed hash, and a login that is not an address is cut
short (`credentials.redaction`), here, so no recorder can forget it. Reason codes are stable
strings (they are filtered on, alerted on and documented), one per way to fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smtpgate.credentials.redaction import redact_login

AUTH = "auth"
MESSAGE = "message"
CONNECT = "connect"

OK = "ok"
FAIL = "fail"

# AUTH failures: the credential core's own `FailureReason` values (never copied here),
# plus the reasons only the wire and the guard know
SASL_CANCELLED = "sasl-cancelled"        # the client ended the exchange with "*"
SASL_MALFORMED = "sasl-malformed"        # a response that cannot be parsed (bad base64, syntax)
BANNED = "banned"                      # the source is banned (at connect, or during a session)
LOGIN_PROTECTED = "login-protected"    # the login is under attack and this source never used it
STORE_UNAVAILABLE = "store-unavailable"
INVALID_CLIENT = "invalid-client"      # the token endpoint: unknown client_id, wrong or revoked secret
NETWORK_NOT_ALLOWED = "network-not-allowed"  # legacy listener: a source outside [legacy] networks (at connect)
TLS_REQUIRED = "tls-required"          # legacy listener: a device set up for TLS tried AUTH without it
DEVICE_ADDRESS = "address"             # legacy listener: the mechanism of a device known by its address
WRONG_SECOND_FACTOR = "wrong-second-factor"  # the web console: the password was right, the code or key was not

# message decisions
ACCEPTED = "accepted"
SENDER_NOT_ALLOWED = "sender-not-allowed"
NULL_SENDER = "null-sender"            # MAIL FROM:<> from submission, unless [smtp] allow_null_sender
DISPLAY_NAME_ADDRESS = "display-name-address"  # a display name that is another address than the real one
QUOTA = "quota"
NO_FROM_HEADER = "no-from-header"
HEADER_TOO_LARGE = "header-too-large"
STORAGE_FAILED = "storage-failed"
PROTOCOL = "protocol"                  # refused by the protocol: too big, bare CR/LF, ...
GUARD_UNAVAILABLE = "guard-unavailable"
DMARC_MISALIGNED = "dmarc-misaligned"      # the From: domain's DMARC policy would refuse what the route can send
RECIPIENT_NOT_ALLOWED = "recipient-not-allowed"  # a device wrote to a recipient outside its list (550 5.7.1)
AUTH_REQUIRED = "auth-required"        # legacy listener: MAIL without AUTH from an address no device has
CREDENTIAL_ENDED = "credential-ended"      # revoked, expired or disabled while the session was open

# connections closed before any session
PROXY_PROTOCOL = "proxy-protocol"  # a balancer's connection without a valid PROXY header, or a header from anyone else


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    kind: str                      # auth | message | connect
    result: str                    # ok | fail
    reason: str = ""
    listener: str = ""
    remote_ip: str = ""
    tls: str = ""                  # protocol version, e.g. TLSv1.3; empty before TLS
    mechanism: str = ""
    login: str = ""
    credential_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        safe = redact_login(self.login)
        if safe != self.login:
            object.__setattr__(self, "login", safe)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": self.kind,
            "result": self.result,
            "reason": self.reason,
            "listener": self.listener,
            "remote_ip": self.remote_ip,
            "tls": self.tls,
            "mechanism": self.mechanism,
            "login": self.login,
            "credential_id": self.credential_id,
            **({"details": self.details} if self.details else {}),
        }


@dataclass(frozen=True)
class StoredEvent:
    """An event as read back from the database."""

    id: int
    event: AuditEvent
    network: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **self.event.to_json(), "network": self.network}
