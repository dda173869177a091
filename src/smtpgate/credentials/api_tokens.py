"""Operator API tokens: `sga_` + 160 random bits + CRC32, the app-password format.

A token has a role (viewer < operator < admin), an optional expiry and optional source
networks. It is shown once, stored only as HMAC-SHA256 under the server's key (a
look-up by hash, so checking costs microseconds), and can be revoked at once. A token
that is malformed (bad checksum) is refused without touching the database.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from smtpgate.credentials import app_passwords
from smtpgate.credentials.errors import InvalidOperation
from smtpgate.credentials.scopes import Scopes, parse_network
from smtpgate.errors import Kind
from smtpgate.store import Store
from smtpgate.store.models_ops import ApiTokenRow
from smtpgate.timefmt import iso_utc

PREFIX = "sga_"
MAX_NAME = 200


class Role(StrEnum):
    """What a token may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def covers(self, needed: Role) -> bool:
        return self.rank >= needed.rank


def generate() -> str:
    return app_passwords.generate(PREFIX)


def is_well_formed(secret: str) -> bool:
    return app_passwords.is_well_formed(secret, PREFIX)


@dataclass(frozen=True)
class ApiTokenInfo:
    """A token as listed: never its secret."""

    id: str
    name: str
    role: Role
    allowed_networks: tuple[str, ...]
    notes: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    state: str  # active | expired | revoked

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "role": str(self.role), "allowed_networks": list(self.allowed_networks),
            "notes": self.notes, "created_by": self.created_by, "created_at": iso_utc(self.created_at),
            "expires_at": iso_utc(self.expires_at), "revoked_at": iso_utc(self.revoked_at),
            "last_used_at": iso_utc(self.last_used_at), "last_used_ip": self.last_used_ip, "state": self.state,
        }


@dataclass(frozen=True)
class IssuedApiToken:
    info: ApiTokenInfo
    secret: str = field(repr=False)


class ApiTokenService:
    """Create, list, revoke and check operator API tokens (owned by the credential core)."""

    def __init__(self, store: Store, *, app_key: bytes, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._key = app_key
        self._clock = clock

    def create(
        self, name: str, role: str, *, expires_in: timedelta | None = None, allowed_networks: tuple[str, ...] = (),
        notes: str = "", actor: str = "",
    ) -> IssuedApiToken:
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidOperation("an API token needs a name (at most 200 characters)", "Name what uses it, e.g. terraform.",
                                   code="name-required", field="name")
        try:
            wanted = Role(role)
        except ValueError:
            raise InvalidOperation(f"{role!r} is not a role; use viewer, operator or admin", code="invalid-role",
                                   field="role", role=role) from None
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidOperation("the expiry must be in the future", "Use a duration such as 90d.",
                                   code="invalid-duration", field="expires")
        networks = tuple(dict.fromkeys(str(parse_network(n)) for n in allowed_networks))
        now = self._clock()
        secret = generate()
        row = ApiTokenRow(
            id=f"at_{_random.token_hex(6)}", name=name, role=wanted.value,
            secret_hash=app_passwords.keyed_hash(self._key, secret), allowed_networks=list(networks), notes=notes,
            created_by=actor, created_at=now, expires_at=now + expires_in if expires_in else None, revoked_by="",
        )
        try:
            with self._store.session() as db:
                if db.scalar(select(ApiTokenRow.id).where(ApiTokenRow.name == name)) is not None:
                    raise InvalidOperation(f"an API token named {name} exists already", code="api-token-exists",
                                           kind=Kind.CONFLICT, field="name", name=name)
                db.add(row)
                db.flush()
                return IssuedApiToken(self._info(row), secret)
        except IntegrityError:
            raise InvalidOperation(f"an API token named {name} exists already", code="api-token-exists",
                                   kind=Kind.CONFLICT, field="name", name=name) from None

    def list(self) -> list[ApiTokenInfo]:
        with self._store.session() as db:
            return [self._info(r) for r in db.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))]

    def get(self, ref: str) -> ApiTokenInfo:
        with self._store.session() as db:
            return self._info(self._row(db, ref))

    def revoke(self, ref: str, *, actor: str = "") -> ApiTokenInfo:
        with self._store.session() as db:
            row = self._row(db, ref)
            if row.revoked_at is None:
                row.revoked_at = self._clock()
                row.revoked_by = actor
            return self._info(row)

    def check(self, secret: str, remote_ip: str) -> tuple[ApiTokenInfo | None, str]:
        """The token this secret is, if it may be used from there; else None and why (never raises)."""
        if not is_well_formed(secret):
            return None, "token-malformed"
        with self._store.session() as db:
            row = db.scalar(select(ApiTokenRow).where(
                ApiTokenRow.secret_hash == app_passwords.keyed_hash(self._key, secret)))
            if row is None:
                return None, "unknown-token"
            info = self._info(row)
            if info.state != "active":
                return None, f"token-{info.state}"
            if not Scopes((), tuple(row.allowed_networks)).allows_ip(remote_ip):
                return None, "ip-not-allowed"
            now = self._clock()
            if row.last_used_at is None or now - row.last_used_at > timedelta(seconds=60) or row.last_used_ip != remote_ip:
                row.last_used_at, row.last_used_ip = now, remote_ip  # not on every request: one write a minute
            return self._info(row), ""

    def secret_status(self, secret: str) -> tuple[str, str | None]:
        """("live" | "revoked" | "expired" | "unknown", token id) of a token found somewhere (a scan, a leak report)."""
        if not is_well_formed(secret):
            return "unknown", None
        with self._store.session() as db:
            row = db.scalar(select(ApiTokenRow).where(ApiTokenRow.secret_hash == app_passwords.keyed_hash(self._key, secret)))
            if row is None:
                return "unknown", None
            state = self._info(row).state
        return ("live" if state == "active" else state), row.id

    def _row(self, db: Any, ref: str) -> ApiTokenRow:
        ref = ref.strip()
        row = db.get(ApiTokenRow, ref) or db.scalar(select(ApiTokenRow).where(ApiTokenRow.name == ref))
        if row is None:
            raise InvalidOperation(f"no API token {ref}", code="api-token-not-found", kind=Kind.NOT_FOUND, ref=ref)
        return row

    def _info(self, row: ApiTokenRow) -> ApiTokenInfo:
        now = self._clock()
        state = "revoked" if row.revoked_at else "expired" if row.expires_at and row.expires_at <= now else "active"
        return ApiTokenInfo(
            row.id, row.name, Role(row.role), tuple(row.allowed_networks), row.notes, row.created_by, row.created_at,
            row.expires_at, row.revoked_at, row.last_used_at, row.last_used_ip, state,
        )
