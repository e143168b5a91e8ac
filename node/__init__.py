"""The node: a NATS front end and the mq9 mailbox API over the replicated store (`cluster/`).

Packages, from the wire inwards (each may import only those below it, and `cluster`):

    node.cli    the `mq9` command: `serve` runs `node.app`; the rest are NATS clients
    node.app    assembles one node's parts and runs them (with node.config, node.logs)
    node.mq9    the `$mq9.AI.*` API, delivery to mailbox subscribers, the cluster view
    node.nats   the NATS client protocol, connections, core pub/sub, routes between nodes
    node.config, node.logs    settings and log format: import nothing of the node

Room for what comes next: `node.auth` (identities, permissions; below `node.nats`,
which asks it at CONNECT and on every publish and subscription) and `node.ops`
(monitoring endpoints and the console; beside `node.mq9`, reading both). The import
directions are kept by tests/test_layering.py.
"""
