"""What the nodes of a cluster share beyond the queue: who is there (the node registry and
its heartbeats) and the keys every node needs (sealed under the cluster's master key)."""
