"""Tables of onboarding and of the operators' console: invitations, and each account's console policy.

An invitation is a one-time link to set an account's password; its token is stored only
as HMAC-SHA256 under the server's key, like app passwords, so the database alone cannot
be used to take over an invited account. An account's policy says whether it may open
the operators' console and with which role, and whether it must have a second factor.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base, UTCDateTime


class InviteRow(Base):
    __tablename__ = "invites"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True, nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AccountPolicyRow(Base):
    """Absent for most accounts: no console role, no second factor required."""

    __tablename__ = "account_policies"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)   # viewer | operator | admin
    require_second_factor: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
