"""Value objects the credential core hands out: accounts, credentials, principals, failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from smtpgate.credentials.scopes import Scopes
from smtpgate.timefmt import iso_utc


class CredentialKind(StrEnum):
    PASSWORD = "password"
    APP_PASSWORD = "app-password"
    ACCESS_TOKEN = "access-token"  # a bearer token: the built-in issuer's or an external IdP's
    DEVICE = "device"  # a printer, scanner, UPS...: the legacy listener only (see credentials/devices.py)


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
    CANARY = "canary"  # a canary credential's secret was used: it leaked from where it was planted
    IP_NOT_ALLOWED = "ip-not-allowed"
    DEVICE_LEGACY_ONLY = "device-legacy-only"  # a device's secret tried on 587/465
    NOT_A_DEVICE = "not-a-device"  # any other credential tried on the legacy listener
    APP_PASSWORD_REQUIRED = "app-password-required"
    # SASL authorization identity other than the login: nobody may act as someone else
    AUTHZID_REFUSED = "authzid-refused"
    # SCRAM-SHA-256: the login has no stored SCRAM keys yet (set the password again)
    NO_SCRAM_VERIFIER = "no-scram-verifier"
    # bearer tokens (XOAUTH2, OAUTHBEARER); see docs/tokens.md
    TOKENS_DISABLED = "tokens-disabled"
    TOKEN_TOO_LONG = "token-too-long"
    TOKEN_MALFORMED = "token-malformed"
    TOKEN_ALG_NOT_ALLOWED = "token-alg-not-allowed"
    TOKEN_WRONG_ISSUER = "token-wrong-issuer"
    TOKEN_UNKNOWN_KEY = "token-unknown-key"
    TOKEN_BAD_SIGNATURE = "token-bad-signature"
    TOKEN_EXPIRED = "token-expired"
    TOKEN_NOT_YET_VALID = "token-not-yet-valid"
    TOKEN_WRONG_AUDIENCE = "token-wrong-audience"
    TOKEN_MISSING_SCOPE = "token-missing-scope"
    TOKEN_NO_LOGIN = "token-no-login"
    TOKEN_LOGIN_MISMATCH = "token-login-mismatch"
    TOKEN_REVOKED = "token-revoked"
    IDP_UNAVAILABLE = "idp-unavailable"  # answered 454: try again later


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
            "created_at": iso_utc(self.created_at),
            "updated_at": iso_utc(self.updated_at),
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
    delivery_target: str | None = None
    delivery_hook: tuple[str, ...] = ()
    canary: bool = False
    legacy_auth: str | None = None    # devices: "none" or "plain"
    legacy_tls: str | None = None     # devices: "none", "legacy" or "modern"

    @property
    def weaknesses(self) -> list[str]:
        from smtpgate.credentials.devices import weaknesses

        return weaknesses(self.legacy_auth, self.legacy_tls) if self.kind is CredentialKind.DEVICE else []

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "kind": str(self.kind),
            "name": self.name,
            "notes": self.notes,
            "created_by": self.created_by,
            "created_at": iso_utc(self.created_at),
            "expires_at": iso_utc(self.expires_at),
            "revoked_at": iso_utc(self.revoked_at),
            "last_used_at": iso_utc(self.last_used_at),
            "last_used_ip": self.last_used_ip,
            "use_count": self.use_count,
            "state": str(self.state),
            "scopes": self.scopes.to_json(),
            "rotated_from": self.rotated_from,
            "replaced_by": self.replaced_by,
            "delivery_target": self.delivery_target,
            "delivery_hook": list(self.delivery_hook),
            "canary": self.canary,
            **({"legacy": {"auth": self.legacy_auth, "tls": self.legacy_tls, "weaknesses": self.weaknesses}}
               if self.kind is CredentialKind.DEVICE else {}),
        }


@dataclass(frozen=True)
class IssuedSecret:
    """A newly generated secret: the only moment it exists in clear."""

    credential: CredentialInfo
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Principal:
    """Who authenticated, with which credential, allowed to do what.

    A service account (bearer tokens) has no account row: its `account_id` is
    "sa:<id>", so account-wide quotas never mix it up with a person's account.
    """

    account_id: int | str
    login: str
    credential_id: str
    credential_kind: CredentialKind
    scopes: Scopes
    device: str = ""                 # a device credential's name (legacy listener): audited with it
    device_tls: str | None = None    # the TLS that device can do: none, legacy, modern


@dataclass(frozen=True)
class AuthFailure:
    reason: FailureReason
    login: str
    credential_id: str | None = None
    device: str = ""  # the right secret of this device, used where it may not be (alerts name it)

