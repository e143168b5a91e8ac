"""nats-py workloads for benchmarks/mq9_bench.py, each run as a process of its own.

    python benchmarks/mq9_clients.py ackpub    --system mq9|js --urls U1,U2,.. --target NAME [--window W] ...
    python benchmarks/mq9_clients.py fanout    --system mq9|js --urls ... --target NAME [--subs K] ...
    python benchmarks/mq9_clients.py catchup   --system mq9|js --urls ... --target NAME --count N
    python benchmarks/mq9_clients.py workqueue --system mq9|js --urls ... --target NAME [--workers K] ...
    python benchmarks/mq9_clients.py failover  --system mq9|js --urls URL --target NAME

`--target` is the mq9 mailbox (created by the harness) or, for JetStream, the subject
inside the harness's stream (`bench.w2`, ...); for the JetStream work queue it is the
durable pull consumer's name on stream BENCHWQ (subject `benchwq.tasks`).

Connection i uses URL i mod the count; publishers and producers use the first URL. The
same client code path serves both systems: an mq9 acknowledged publish is a request to
`$mq9.AI.MAILBOX.MSG.{mail_id}.normal`, a JetStream one is `js.publish` (a request to
the stream's subject whose reply is the PubAck); both are awaited by W coroutines, each
sending its next request when its reply came.

Output: "#P done total" progress lines on stdout (about five a second), then one JSON
line with the figures ("rate" is the headline); "complete": false when the run hit its
deadline or saw errors (the figures then cover what was done); a client failure prints
{"error": ...} and exits 1. The failover workload reads "kill <monotonic time>" from
stdin: the moment the harness SIGKILLed the leader.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root: benchmarks.*

from benchmarks.clients.common import errors, run_process, with_errors  # noqa: E402
from benchmarks.clients.mq9_consume import catchup, fanout, workqueue  # noqa: E402
from benchmarks.clients.mq9_publish import ackpub, failover  # noqa: E402

WORKLOADS = {"ackpub": ackpub, "fanout": fanout, "catchup": catchup, "workqueue": workqueue, "failover": failover}


async def main(a: argparse.Namespace) -> dict:
    return with_errors(await WORKLOADS[a.workload](a))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=list(WORKLOADS))
    p.add_argument("--system", choices=["mq9", "js"], required=True)
    p.add_argument("--urls", required=True, help="comma-separated server URLs")
    p.add_argument("--target", required=True, help="mailbox name, JetStream subject or durable consumer")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument("--window", type=int, default=1, help="requests in flight (ackpub)")
    p.add_argument("--subs", type=int, default=10, help="subscriber connections (fanout)")
    p.add_argument("--workers", type=int, default=4, help="workers (workqueue)")
    p.add_argument("--batch", type=int, default=64, help="fetch batch (JetStream workqueue)")
    p.add_argument("--duration", type=float, default=1e9, help="stop issuing requests after this (ackpub)")
    p.add_argument("--interval", type=float, default=0.01, help="pause between publishes (failover)")
    p.add_argument("--after", type=float, default=0.5, help="keep publishing this long after recovery (failover)")
    p.add_argument("--request-timeout", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    a = p.parse_args(argv)
    a.urls = [u for u in a.urls.split(",") if u]
    if not a.urls or a.count <= 0 or a.window <= 0 or a.subs <= 0 or a.workers <= 0 or a.timeout <= 0:
        p.error("urls, counts and the timeout must be given and positive")
    return a


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    run_process(main(args), args.timeout + 20,
                lambda error: {"workload": args.workload, "error": error, "client_errors": errors[:5]})
