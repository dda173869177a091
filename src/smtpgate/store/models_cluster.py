"""Tables of a cluster: the shared queue and capture store, queue-wide values, the node
registry and the sealed secrets every node reads.

They exist on every database (each concern's migrations apply everywhere) but are used
only with `[cluster] enabled = true` on PostgreSQL (docs/cluster.md). Lease and
heartbeat times are `timestamptz` compared with the database's own `now()`, so the
nodes' clocks never decide who holds a message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from smtpgate.store.models import Base


class QueuedMessageRow(Base):
    """One accepted message: its metadata, its delivery state and who holds it now.

    `box` is "queue" (waiting for delivery) or "capture" (kept for `smtpgate capture`).
    A claim is a lease: `claim_token` names the holder's attempt, `lease_until` when it
    lapses unless renewed; a dead node's claims lapse and another node takes the message.
    """

    __tablename__ = "cluster_messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    box: Mapped[str] = mapped_column(String(16), nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    claim_node: Mapped[str | None] = mapped_column(String(200), nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_cluster_messages_box", "box", "received_at", "id"),)


class MessageChunkRow(Base):
    """A message's bytes in pieces of at most a MiB, so none is ever whole in one value."""

    __tablename__ = "cluster_message_chunks"

    message_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("cluster_messages.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class ClusterValueRow(Base):
    """A queue-wide value with a version that moves on each change (hold rules, wake-ups)."""

    __tablename__ = "cluster_values"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    value: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class NodeRow(Base):
    """One server process of a node, as its last heartbeat left it."""

    __tablename__ = "cluster_nodes"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(40), nullable=False)
    address: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    connections: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class SealedSecretRow(Base):
    """A key or secret, AES-GCM encrypted under the cluster's master key file."""

    __tablename__ = "cluster_secrets"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
