"""Side-by-side benchmarks of mq9 against nats-server and JetStream.

The entry points are scripts run by path (the Makefile, docs/benchmarks.md and
tests/bench run them so): `core_nats.py` (core NATS against nats-server),
`mq9_bench.py` (mailboxes against JetStream), `apply_cost.py` (the apply cost of one
work-queue task), and the client processes they start, `natspy_bench.py` and
`mq9_clients.py` (nats-py) and `natsbench.c` (the NATS C client). Each script keeps
its docstring (its --help) and its flags; the work lives in packages:

| package | holds |
|---|---|
| `common/` | what both benchmarks share: errors and exit codes, installs and builds, ports, machine facts |
| `core/` | core_nats.py's workloads, servers and clusters, and its run and table |
| `mq9/` | mq9_bench.py's sizes, clusters, client runner, workloads, phases and report |
| `clients/` | the nats-py client processes' workloads and what they share |

Servers are started and stopped with the shared harness (harness/), the same code the
tests and the compose check use.
"""
