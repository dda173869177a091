"""Tables of the token concern: service accounts, issued and revoked tokens, SCRAM keys.

Secrets are never stored: a client secret as HMAC-SHA256 under the server's key (like an
app password), a password or app password for SCRAM only as RFC 5802 StoredKey and
ServerKey, which prove a client's knowledge without revealing the secret.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base, UTCDateTime

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT.
_RowId = BigInteger().with_variant(Integer, "sqlite")


class ServiceAccountRow(Base):
    """A machine that obtains access tokens with a client id (its `id`) and a client secret."""

    __tablename__ = "service_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # also the OAuth client_id
    login: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    notes: Mapped[str] = mapped_column(Text, default="", nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    allowed_senders: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    allowed_networks: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    max_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rcpt_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_rcpt_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token_lifetime: Mapped[int | None] = mapped_column(Integer, nullable=True)  # seconds
    created_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    last_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class OAuthTokenRow(Base):
    """A token this server issued (with its service account), or any token revoked by `jti`."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (UniqueConstraint("issuer", "jti", name="uq_oauth_tokens_issuer_jti"),)

    id: Mapped[int] = mapped_column(_RowId, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(255), nullable=False)
    jti: Mapped[str] = mapped_column(String(255), nullable=False)
    service_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), index=True, nullable=True
    )
    subject: Mapped[str] = mapped_column(String(320), default="", nullable=False)
    scope: Mapped[str] = mapped_column(Text, default="", nullable=False)
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True, nullable=True)
    issued_via: Mapped[str] = mapped_column(String(16), default="", nullable=False)  # oauth | cli | revocation
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)


class ScramVerifierRow(Base):
    """RFC 5802 keys of one credential (account password or app password), beside its hash."""

    __tablename__ = "scram_verifiers"

    credential_id: Mapped[str] = mapped_column(
        ForeignKey("credentials.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, nullable=False
    )
    salt: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    iterations: Mapped[int] = mapped_column(Integer, nullable=False)
    stored_key: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    server_key: Mapped[bytes] = mapped_column(LargeBinary(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
