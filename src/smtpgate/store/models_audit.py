"""Tables of the watchtower: audit events, alerts, and the record of bans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base, UTCDateTime

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
_EventId = BigInteger().with_variant(Integer, "sqlite")


class AuditEventRow(Base):
    """One authentication attempt or message decision. Never holds a secret."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(_EventId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)          # auth | message | connect
    listener: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    remote_ip: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    network: Mapped[str] = mapped_column(String(64), default="", nullable=False)   # /24 or /64 of remote_ip
    source: Mapped[str] = mapped_column(String(64), default="", nullable=False)    # the ip, or its /64
    tls: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    mechanism: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    login: Mapped[str] = mapped_column(String(320), default="", nullable=False)      # as given
    account: Mapped[str] = mapped_column(String(320), default="", nullable=False)    # normalised
    credential_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    result: Mapped[str] = mapped_column(String(8), nullable=False)         # ok | fail
    reason: Mapped[str] = mapped_column(String(40), default="", nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)

    __table_args__ = (
        Index("ix_audit_events_credential", "credential_id", "kind", "result", "network"),
        Index("ix_audit_events_account", "account", "kind", "result", "source"),
        Index("ix_audit_events_source", "source", "kind", "result"),
    )


class AlertRow(Base):
    """An anomaly worth a human's attention; `dedupe_key` makes one alert of many workers."""

    __tablename__ = "audit_alerts"

    id: Mapped[int] = mapped_column(_EventId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    rule: Mapped[str] = mapped_column(String(32), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    login: Mapped[str] = mapped_column(String(320), default="", nullable=False)
    credential_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    remote_ip: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    webhook: Mapped[str] = mapped_column(String(16), default="off", nullable=False)   # off | pending | sent | failed
    email: Mapped[str] = mapped_column(String(16), default="off", nullable=False)


class BanRow(Base):
    """The record of a ban (one row per network, its latest state); the backend enforces it."""

    __tablename__ = "guard_bans"

    network: Mapped[str] = mapped_column(String(64), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    until: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    strikes: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)         # auto | manual
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lifted_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
