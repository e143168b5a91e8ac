"""Operating a node: the monitoring port (nats-server's JSON endpoints, mq9's own,
Prometheus metrics) and the web console for people.

`monitor` runs one aiohttp server on the node's own event loop (`--monitor HOST:PORT`);
`nats_endpoints` answers /healthz, /varz, /connz, /subsz and /routez in nats-server's
shapes, `mq9_endpoints` /raftz and /mailboxz, `metrics` /metrics, `census` counts what
is stored without blocking the loop, and `console` serves the console's page and the
two things it does as a NATS client of this node (watch a mailbox, answer a request).

May import: `node.nats`, `node.mq9`, `node.config` and `cluster` (it reads them; it
changes state only as a NATS client would). Nothing below imports it.
"""
