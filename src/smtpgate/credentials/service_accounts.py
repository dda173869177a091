"""Service accounts: machines that get short-lived access tokens instead of keeping a password.

A service account has a login (an address-like identity, and its default allowed
sender), scopes like an app password's, and an OAuth client: its id is the `client_id`,
and its client secret is `sgc_` + 160 random bits + a CRC32 checksum, the app-password
format with its own prefix so that secret scanners tell the two apart and a typo is
refused without a database look-up. The secret is stored only as HMAC-SHA256 under the
server's key, exactly as app passwords are. What the machine sends mail with is the
token; the client secret only ever goes to `POST /oauth/token`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from smtpgate.credentials import app_passwords
from smtpgate.credentials.app_passwords import keyed_hash
from smtpgate.credentials.scopes import Scopes
from smtpgate.store.models_tokens import ServiceAccountRow
from smtpgate.timefmt import iso_utc

PREFIX = "sgc_"
PATTERN = re.compile(rf"^{PREFIX}[a-z2-7]{{{app_passwords.BODY_LENGTH + app_passwords.CHECK_LENGTH}}}$")


def generate_client_secret() -> str:
    return app_passwords.generate(PREFIX)


def is_well_formed(secret: str) -> bool:
    return app_passwords.is_well_formed(secret, PREFIX)


def secret_hash(key: bytes, secret: str) -> str:
    return keyed_hash(key, secret)


def new_id() -> str:
    return f"sa_{secrets.token_hex(8)}"


def scopes_of(row: ServiceAccountRow) -> Scopes:
    return Scopes.of(row)


@dataclass(frozen=True)
class ServiceAccountInfo:
    id: str  # also its OAuth client_id
    login: str
    name: str
    notes: str
    scopes: Scopes
    token_lifetime: timedelta | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    last_issued_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    use_count: int

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at else "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_id": self.id,
            "login": self.login,
            "name": self.name,
            "notes": self.notes,
            "state": self.state,
            "scopes": self.scopes.to_json(),
            "token_lifetime": int(self.token_lifetime.total_seconds()) if self.token_lifetime else None,
            "created_by": self.created_by,
            "created_at": iso_utc(self.created_at),
            "revoked_at": iso_utc(self.revoked_at),
            "last_issued_at": iso_utc(self.last_issued_at),
            "last_used_at": iso_utc(self.last_used_at),
            "last_used_ip": self.last_used_ip,
            "use_count": self.use_count,
        }


@dataclass(frozen=True)
class IssuedClient:
    """A new client secret: the only moment it exists in clear."""

    account: ServiceAccountInfo
    client_secret: str = field(repr=False)


def info(row: ServiceAccountRow) -> ServiceAccountInfo:
    return ServiceAccountInfo(
        id=row.id,
        login=row.login,
        name=row.name,
        notes=row.notes,
        scopes=scopes_of(row),
        token_lifetime=timedelta(seconds=row.token_lifetime) if row.token_lifetime else None,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_issued_at=row.last_issued_at,
        last_used_at=row.last_used_at,
        last_used_ip=row.last_used_ip,
        use_count=row.use_count,
    )

