"""The cluster: which nodes are there, how they are doing (`smtpgate cluster status`)."""

from __future__ import annotations

import builtins

from smtpgate.cluster.registry import NodeStatus, node_statuses
from smtpgate.errors import Invalid
from smtpgate.ops.actor import Actor
from smtpgate.ops.base import Concern


class Cluster(Concern):
    def status(self, actor: Actor) -> builtins.list[NodeStatus]:
        """Every node seen lately: version, address, last heartbeat, connections, queue claims."""
        if not self.rt.clustered:
            raise Invalid("this installation is not a cluster", "Set `[cluster] enabled = true` (docs/cluster.md).",
                          code="not-clustered", field="cluster.enabled")
        return node_statuses(self.rt.store, interval=self.rt.config.cluster.heartbeat_interval.total_seconds())
