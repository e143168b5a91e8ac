"""Core-NATS benchmark: the same workloads against nats-server and an mq9 node, side by side.

    .venv/bin/python benchmarks/core_nats.py            # full run (a few minutes at most)
    .venv/bin/python benchmarks/core_nats.py --quick    # smaller counts, for a smoke test
    .venv/bin/python benchmarks/core_nats.py --only mq9 # one server only
    .venv/bin/python benchmarks/core_nats.py --profile  # mq9 under py-spy -> out/core_profile.svg
    .venv/bin/python benchmarks/core_nats.py --cluster  # across nodes of two 3-node clusters (2-3 min)

What it does, in order:
  1. installs the Debian packages nats-server and libnats-dev with apt-get if missing;
  2. builds benchmarks/natsbench.c (the NATS C client load generator) into benchmarks/bin/;
  3. starts nats-server and an mq9 node on free loopback ports in 19000-19999;
  4. runs every workload with nats-py (benchmarks/natspy_bench.py, its own process) and with
     natsbench, interleaved (nats-server, then mq9, three times) and keeps the best run;
  5. prints a table and writes every run plus machine facts to benchmarks/out/core_nats.json.

Every wait has a deadline, every client run a timeout, and both servers are stopped in a
`finally`. A run that hits its deadline is reported with what it delivered and marked `*`.

--cluster measures core NATS *between* nodes instead: a 3-node nats-server cluster (routes
on loopback, cluster name "bench") and a 3-node mq9 cluster (Raft + routes), both running
side by side; the publisher/requester connects to node 1 and the subscriber/responder to
node 2, so every message and reply crosses a route. Each cluster counts as up once a
probe publish from every node reaches a subscriber on every other node; each client run
first waits for its subscriber's interest to reach node 1 (a probe request answered), so
no measured message is lost to a subscription still on its way. The workloads are
publish to one remote subscriber (targets: mq9 >= 0.25x nats-server) and request/reply
with 1 and 64 in flight (targets >= 0.5x), each with nats-py and natsbench. Results go to
benchmarks/out/core_nats_cluster.json (core_nats.json is left alone).

Ports: everything in 19000-19999 except the mq9 route listeners. An mq9 node dials a
peer's routes on the peer's Raft port - 1000, so with client and Raft ports in range each
node's routes (`--routes`) listen on its Raft port - 1000, in 18000-18999.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root: benchmarks.*, harness

from benchmarks.common.cli import run_main  # noqa: E402
from benchmarks.core import run  # noqa: E402
from benchmarks.core.workloads import REPEATS  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller counts (a smoke test, not a measurement)")
    p.add_argument("--only", choices=["mq9", "nats"], help="run against one server only")
    p.add_argument("--profile", action="store_true",
                   help="run the mq9 node under py-spy (pip-installed if absent); writes out/core_profile.svg")
    p.add_argument("--cluster", action="store_true",
                   help="3-node clusters, publisher/requester on node 1, subscriber/responder on node 2; "
                        "writes out/core_nats_cluster.json")
    p.add_argument("--repeats", type=int, default=REPEATS, help="runs per server and workload; the best is kept")
    p.add_argument("--workloads", default="", help="comma-separated keys to run, e.g. c_pub,py_reqrep (default all)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.cluster and args.profile:
        p.error("--profile is for the single node; it does not combine with --cluster")
    return args


if __name__ == "__main__":
    run_main(parse_args, run.main)
