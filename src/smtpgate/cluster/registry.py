"""The node registry: each server process of each node writes a heartbeat row.

A row per process (node name and pid), rewritten every `[cluster] heartbeat_interval`
with its open connections; `smtpgate cluster status` adds them up per node and counts
the node's live queue claims. A node is "up" while its newest heartbeat is younger than
three intervals; a process that stops cleanly removes its row, one that is killed leaves
it to age (rows older than a day are pruned by the next heartbeat of any node).
Heartbeat times are the database's `now()`, so the nodes' clocks do not matter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from smtpgate import __version__
from smtpgate.store import Store
from smtpgate.store.models_cluster import NodeRow

PRUNE_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    version: str
    address: str
    last_heartbeat: datetime
    connections: int
    claims: int
    processes: int
    up: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "address": self.address,
            "last_heartbeat": self.last_heartbeat.isoformat(), "connections": self.connections,
            "claims": self.claims, "processes": self.processes, "up": self.up,
        }


class NodeRegistry:
    def __init__(self, store: Store, *, node: str, address: str, interval: float) -> None:
        self._store = store
        self.node = node
        self.address = address
        self.interval = interval
        self._pid = os.getpid()

    def beat(self, connections: int) -> None:
        """Upsert this process's row (blocking: call it in a thread)."""
        row = dict(name=self.node, pid=self._pid, version=__version__, address=self.address,
                   started_at=func.now(), heartbeat_at=func.now(), connections=connections)
        statement = pg_insert(NodeRow).values(**row).on_conflict_do_update(
            index_elements=["name", "pid"],
            set_={"heartbeat_at": func.now(), "connections": connections, "version": __version__,
                  "address": self.address},
        )
        with self._store.session() as db:
            db.execute(statement)
            db.execute(delete(NodeRow).where(NodeRow.heartbeat_at < func.now() - PRUNE_AFTER))

    def leave(self) -> None:
        with self._store.session() as db:
            db.execute(delete(NodeRow).where(NodeRow.name == self.node, NodeRow.pid == self._pid))


def node_statuses(store: Store, *, interval: float) -> list[NodeStatus]:
    """Every node seen in the last day, by name; with its live connections and queue claims."""
    with store.session() as db:
        now: datetime = db.execute(select(func.now())).scalar_one()
        rows = list(db.scalars(select(NodeRow).order_by(NodeRow.name, NodeRow.pid)))
        claims = {str(node): int(count) for node, count in db.execute(text(
            "SELECT claim_node, count(*) FROM cluster_messages WHERE box = 'queue' "
            "AND lease_until >= now() GROUP BY claim_node"))}
    fresh = timedelta(seconds=3 * interval)
    by_name: dict[str, list[NodeRow]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    statuses = []
    for name, group in by_name.items():
        newest = max(group, key=lambda r: r.heartbeat_at)
        live = [r for r in group if now - r.heartbeat_at <= fresh]
        statuses.append(NodeStatus(
            name=name, version=newest.version, address=newest.address, last_heartbeat=newest.heartbeat_at,
            connections=sum(r.connections for r in live), claims=claims.get(name, 0),
            processes=len(live), up=bool(live),
        ))
    return statuses
