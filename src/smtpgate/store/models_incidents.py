"""The incident concern's table: one row per incident, what it contained and how it ended.

What an incident did (revoked, held, banned, what had already left) is written once, when
it is opened, so the record stays true after the queue and the bans have moved on. It
never holds a secret or a message body: ids, addresses, counts and domains only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base, UTCDateTime


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    opened_by: Mapped[str] = mapped_column(String(200), nullable=False)
    subject_kind: Mapped[str] = mapped_column(String(16), nullable=False)     # credential | account
    subject: Mapped[str] = mapped_column(String(320), nullable=False)         # a credential id or a login
    account: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)            # open | closed
    contained: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_by: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    resolution: Mapped[str] = mapped_column(String(16), default="", nullable=False)  # released | deleted | kept
