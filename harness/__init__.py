"""The test and benchmark harness: real mq9 and nats-server processes, from the outside.

harness/ owns starting and stopping real mq9 node processes and nats-server (JetStream)
processes and clusters of them, handing out free ports, waiting for conditions with
deadlines, and polling a cluster's Raft status over NATS. `tests/`, `benchmarks/` and
`deploy/compose/check.py` use it, so the three start, wait and poll the same way.

It starts a node the way an operator does, as a process (`python -m node.cli serve ...`),
and talks to it only through sockets: it imports nothing from `node/` or `cluster/`, and
they never import it (`tests/test_layering.py` holds both directions).

| module | job |
|---|---|
| `ports.py` | free loopback ports from a range, never the same one twice |
| `waiting.py` | polling a condition until a deadline, sync and async |
| `process.py` | one server process: start, wait for its port, stop, kill, pause, RSS, log |
| `mq9_nodes.py` | mq9 node command lines, node processes, peering them into a cluster |
| `nats_server.py` | nats-server command lines and JetStream configs |
| `raft_status.py` | NODE.STATUS over nats-py: one leader, convergence, mailbox lists |

Every failure of the harness itself (a process that exits before it listens, a condition
that did not hold by its deadline, no free port) is a `HarnessError`.
"""


class HarnessError(AssertionError):
    """A harness step failed; the message says what and shows the process's log where one helps.

    An AssertionError, so that in a test it reads as the failed check it is; the
    benchmarks' BenchError derives from it and is reported the same way.
    """
