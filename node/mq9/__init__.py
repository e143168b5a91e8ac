"""The mq9 agent-mailbox protocol on top of the replicated store.

Owns the `$mq9.AI.*` subject space (`subjects`), the request API that turns client
requests into commands and replies (`api`), delivery of applied effects to this
node's mailbox subscribers and queue-group members (`delivery`), and the cluster
view that announces peers' client URLs (`cluster_view`).

May import: `node.nats` (connections, subscriptions, wire encoders, `-ERR` words),
`node.config` and `cluster`. Never `node.cli` or `node.app`.
"""
