"""Table definitions. Times are stored as naive UTC and handed out as aware UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both SQLite (no time zones) and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    login: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    owner: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    notes: Mapped[str] = mapped_column(Text, default="", nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    require_app_passwords: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    credentials: Mapped[list[CredentialRow]] = relationship(back_populates="account")


LIVE_APP_PASSWORD = "revoked_at IS NULL AND replaced_by IS NULL AND kind = 'app-password'"


class CredentialRow(Base):
    """Any secret that can authenticate: the account password or an app password."""

    __tablename__ = "credentials"
    # names tell an owner's app passwords apart: unique among the live ones of an account
    # (not revoked, not replaced by a rotation); migration 0005_credential_names
    __table_args__ = (
        Index(
            "uq_credentials_live_name", "account_id", "name", unique=True,
            sqlite_where=text(LIVE_APP_PASSWORD), postgresql_where=text(LIVE_APP_PASSWORD),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, nullable=False
    )
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    notes: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    secret_hash: Mapped[str] = mapped_column(Text, nullable=False)
    lookup_key: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    allowed_senders: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    allowed_networks: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    max_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rcpt_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rcpt_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rotated_from: Mapped[str | None] = mapped_column(String(40), nullable=True)
    replaced_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # where rotation delivers the successor (file:, env:, keyring:) and the hook run after it
    delivery_target: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    delivery_hook: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # a secret planted where no one should find it: any use of it is a leak, never a login
    canary: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # devices on the legacy listener: recipients they may send to, how they authenticate, their TLS
    allowed_recipients: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    legacy_auth: Mapped[str | None] = mapped_column(String(10), nullable=True)
    legacy_tls: Mapped[str | None] = mapped_column(String(10), nullable=True)

    account: Mapped[AccountRow] = relationship(back_populates="credentials")


class CredentialEpochRow(Base):
    """One row whose version goes up with every change to a credential or an account.

    Bumped in the transaction that makes the change, so any process that reads a higher
    version knows its cached credentials may be stale (credentials/invalidation.py).
    """

    __tablename__ = "credential_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
