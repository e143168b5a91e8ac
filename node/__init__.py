"""The NATS front end: protocol, connections, routing, the mq9 API, delivery and the CLI."""
