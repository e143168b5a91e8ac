"""nats-py workloads for benchmarks/core_nats.py, run as a process of their own.

    python benchmarks/natspy_bench.py pub    --url URL [--count N] [--size B]
    python benchmarks/natspy_bench.py fanout --url URL [--count N] [--size B] [--subs K]
    python benchmarks/natspy_bench.py reqrep --url URL [--count N] [--size B] [--concurrency C]
    ... [--sub-url URL2]   subscribers/responder on URL2 (another node of a cluster)

It runs in its own process so the client's event loop shares the CPU with nothing else
of the harness. Publisher and subscribers are separate connections in this one process
and event loop, so the figures are client-bound: that is what an agent written with
nats-py sees. The result is one JSON line on stdout, shaped like natsbench's
("rate" is the headline figure); on a deadline the run reports what it got with
"complete": false; a client error prints {"error": ...} and exits 1.

With --sub-url, the subscribers (or the responder) connect there and the publisher (or
requester) to --url; before the clock starts, the publisher sends requests on the subject
until one is answered (subscribers answer a request whose body is the probe and do not
count it; the responder echoes it), so the subscription has reached the publisher's
server and no measured message is lost on its way between nodes; pub/fanout then stop
waiting STALL_S after the last delivery once the publisher has flushed ("stalled": true),
as messages lost between servers would otherwise hold the run until its deadline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root: benchmarks.*

from benchmarks.clients.common import run_process, with_errors  # noqa: E402
from benchmarks.clients.core import pubsub, reqrep  # noqa: E402


async def main(args: argparse.Namespace) -> dict:
    if args.mode == "pub":
        result = await pubsub(args, 1)
    elif args.mode == "fanout":
        result = await pubsub(args, args.subs)
    else:
        result = await reqrep(args)
    return with_errors(result)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pub", "fanout", "reqrep"])
    p.add_argument("--url", default="nats://127.0.0.1:4222", help="publisher/requester connection")
    p.add_argument("--sub-url", default=None,
                   help="subscriber/responder connections (default --url); waits for interest to propagate")
    p.add_argument("--count", type=int, default=100_000, help="messages (pub, fanout) or requests (reqrep)")
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument("--subs", type=int, default=10, help="subscriber connections (fanout)")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight (reqrep)")
    p.add_argument("--timeout", type=float, default=60.0, help="overall deadline in seconds")
    args = p.parse_args(argv)
    if args.count <= 0 or args.subs <= 0 or args.concurrency <= 0 or args.timeout <= 0:
        p.error("counts and the timeout must be positive")
    return args


if __name__ == "__main__":
    a = parse_args(sys.argv[1:])
    run_process(main(a), a.timeout + 15, lambda error: {"mode": a.mode, "error": error})
