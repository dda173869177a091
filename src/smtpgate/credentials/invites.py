"""Invitations: a one-time, expiring link where a new account's owner sets the password.

The token (`sgi_` + 160 random bits + CRC32, the app-password format) is shown once, in the
link, and stored only as HMAC-SHA256 under the server's key. It is consumed in the same
transaction that sets the password, by a conditional update, so two tabs racing with the
same link set the password once. Issuing a new invitation for an account ends the older
ones; disabling the account ends them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from smtpgate.credentials import app_passwords
from smtpgate.credentials.errors import CredentialError
from smtpgate.errors import Kind
from smtpgate.timefmt import iso_utc

PREFIX = "sgi_"


def generate() -> str:
    return app_passwords.generate(PREFIX)


def is_well_formed(secret: str) -> bool:
    return app_passwords.is_well_formed(secret, PREFIX)


class InviteInvalid(CredentialError):
    """The link cannot be used: unknown, used, expired or withdrawn (the code says which)."""

    code = "invite-unknown"
    kind = Kind.NOT_FOUND


@dataclass(frozen=True)
class InviteInfo:
    id: str
    login: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    state: str                    # pending | used | expired | revoked
    require_second_factor: bool   # the owner must add a second factor before anything else

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "login": self.login, "created_by": self.created_by, "created_at": iso_utc(self.created_at),
            "expires_at": iso_utc(self.expires_at), "used_at": iso_utc(self.used_at),
            "revoked_at": iso_utc(self.revoked_at), "state": self.state,
            "require_second_factor": self.require_second_factor,
        }


@dataclass(frozen=True)
class IssuedInvite:
    info: InviteInfo
    secret: str = field(repr=False)


def state_of(used_at: datetime | None, revoked_at: datetime | None, expires_at: datetime, now: datetime) -> str:
    if used_at is not None:
        return "used"
    if revoked_at is not None:
        return "revoked"
    return "expired" if expires_at <= now else "pending"


REFUSALS = {
    "used": ("this invitation link was used already", "invite-used"),
    "revoked": ("this invitation link was withdrawn", "invite-revoked"),
    "expired": ("this invitation link has expired", "invite-expired"),
}
