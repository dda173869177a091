"""Tables of the operations concern: the operator audit trail and operator API tokens.

The trail records who changed what, from where, when and with what outcome; it never
holds a secret. An API token is stored only as HMAC-SHA256 under the server's key (as
app passwords are): the database alone cannot be used to call the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base, UTCDateTime

_RowId = BigInteger().with_variant(Integer, "sqlite")


class OperatorEventRow(Base):
    """One operation an operator asked for, through any face, and how it ended."""

    __tablename__ = "operator_events"

    id: Mapped[int] = mapped_column(_RowId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)       # cli:alice | api:terraform
    role: Mapped[str] = mapped_column(String(16), nullable=False)         # viewer | operator | admin
    face: Mapped[str] = mapped_column(String(16), nullable=False)         # cli | api
    remote_ip: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)       # e.g. credential.revoke
    target: Mapped[str] = mapped_column(String(320), default="", nullable=False)
    outcome: Mapped[str] = mapped_column(String(64), nullable=False)      # ok, or an error code
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)

    __table_args__ = (Index("ix_operator_events_actor", "actor", "id"),)


class ApiTokenRow(Base):
    """An operator API token (`sga_...`): a role, an optional expiry and source networks."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    allowed_networks: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    notes: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
