"""The `mq9` command line (typer): `serve` runs a node, the other commands are clients.

`main` holds the typer app and `serve`; `client` the options and connection every
client command shares; `mailbox` and `cluster` the commands for people. The client
commands talk NATS to a broker like any agent (nats-py) and import nothing of a
node's insides except `node.config`; `serve` alone imports `node.app`.
"""
