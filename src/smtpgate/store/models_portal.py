"""Tables of the web console: owners' sessions and second factors.

A session is stored by the SHA-256 of its cookie value, a recovery code by a keyed hash
and a TOTP key encrypted under the server's key: the database alone signs nobody in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base, UTCDateTime

_RowId = BigInteger().with_variant(Integer, "sqlite")


class WebSessionRow(Base):
    """One signed-in browser: `stage` is `second-factor` until the second step is done."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie value
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    remote_ip: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    user_agent: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    challenge: Mapped[str] = mapped_column(String(200), default="", nullable=False)  # the WebAuthn ceremony under way
    failures: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # wrong second factors in this session

    __table_args__ = (Index("ix_web_sessions_account", "account_id"),)


class SecondFactorRow(Base):
    """A TOTP key or a WebAuthn credential of an account; a TOTP key is off until confirmed."""

    __tablename__ = "second_factors"

    id: Mapped[int] = mapped_column(_RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # totp | webauthn
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # TOTP: encrypted key; WebAuthn: public key
    credential_id: Mapped[str | None] = mapped_column(String(1400), nullable=True, unique=True)  # WebAuthn, base64url
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)  # WebAuthn; TOTP: last step used
    transports: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_second_factors_account", "account_id"),)


class RecoveryCodeRow(Base):
    """One one-time recovery code, as HMAC-SHA256 under the server's key."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(_RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False)
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_recovery_codes_account", "account_id"),)


class TwoFactorStateRow(Base):
    """Whether the account required app passwords before its first factor (restored after the last)."""

    __tablename__ = "two_factor_state"

    account_id: Mapped[int] = mapped_column(Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    required_before: Mapped[bool] = mapped_column(Boolean, nullable=False)
