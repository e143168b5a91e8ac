"""The nats-py client processes' workloads: natspy_bench.py's (core NATS) and mq9_clients.py's (mq9 / JetStream).

Each client runs as a process of its own, so its event loop shares the CPU with nothing
of the harness; `common` holds what both kinds share: the connection, the error notes,
the progress lines and the one JSON line a run ends with.
"""
