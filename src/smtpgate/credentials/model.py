"""Value objects the credential core hands out: accounts, credentials, principals, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from smtpgate.credentials.scopes import Scopes


class CredentialKind(StrEnum):
    PASSWORD = "password"
    APP_PASSWORD = "app-password"


class CredentialState(StrEnum):
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DORMANT = "dormant"
    DISABLED = "disabled"


class FailureReason(StrEnum):
    """Why an authentication failed. Goes to the audit log, never to the client."""

    UNKNOWN_LOGIN = "unknown-login"
    BAD_SECRET = "bad-secret"
    REVOKED = "revoked"
    EXPIRED = "expired"
    DISABLED = "disabled"
    IP_NOT_ALLOWED = "ip-not-allowed"
    APP_PASSWORD_REQUIRED = "app-password-required"


@dataclass(frozen=True)
class AccountInfo:
    id: int
    login: str
    display_name: str
    owner: str
    notes: str
    enabled: bool
    require_app_passwords: bool
    has_password: bool
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "login": self.login,
            "display_name": self.display_name,
            "owner": self.owner,
            "notes": self.notes,
            "enabled": self.enabled,
            "require_app_passwords": self.require_app_passwords,
            "has_password": self.has_password,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class CredentialInfo:
    """One line of the inventory: which credential, whose, for what, used when and where."""

    id: str
    account: str
    kind: CredentialKind
    name: str
    notes: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    use_count: int
    scopes: Scopes
    state: CredentialState
    rotated_from: str | None = None
    replaced_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "kind": str(self.kind),
            "name": self.name,
            "notes": self.notes,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
            "last_used_ip": self.last_used_ip,
            "use_count": self.use_count,
            "state": str(self.state),
            "scopes": self.scopes.to_json(),
            "rotated_from": self.rotated_from,
            "replaced_by": self.replaced_by,
        }


@dataclass(frozen=True)
class IssuedSecret:
    """A newly generated secret: the only moment it exists in clear."""

    credential: CredentialInfo
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Principal:
    """Who authenticated, with which credential, allowed to do what."""

    account_id: int
    login: str
    credential_id: str
    credential_kind: CredentialKind
    scopes: Scopes


@dataclass(frozen=True)
class AuthFailure:
    reason: FailureReason
    login: str
    credential_id: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
