"""mq9 mailboxes vs NATS JetStream: the same persistent-messaging workloads, side by side.

    .venv/bin/python benchmarks/mq9_bench.py                    # full run, 3-node clusters (~3 min; 9 at most)
    .venv/bin/python benchmarks/mq9_bench.py --rounds 3         # three full runs, medians and ratio ranges
    .venv/bin/python benchmarks/mq9_bench.py --quick            # smaller counts (~2 min): a smoke test
    .venv/bin/python benchmarks/mq9_bench.py --nodes 1          # single nodes (R1 stream)
    .venv/bin/python benchmarks/mq9_bench.py --only mq9 --workloads 2,5
    .venv/bin/python benchmarks/mq9_bench.py --profile          # mq9 nodes under py-spy -> out/mq9_node{N}.svg
    .venv/bin/python benchmarks/mq9_bench.py --window-sweep     # workload 2 at 1,16,64,256 in flight (+ plot)

Workloads (128-byte payloads unless noted; "py" = nats-py in its own process, "C" =
benchmarks/natsbench.c on the NATS C client):
  1  acknowledged publish, one at a time: msgs/s, latency p50/p99           py
  2  acknowledged publish, 256 in flight: msgs/s                             py, C
  3  fan-out: one mailbox / stream subject, 10 subscribers over the nodes    py, C
  4  catch-up: 100,000 stored messages in 3 priorities replayed to a new subscriber   py, C
  5  work queue: 4 workers acking, 20,000 tasks: tasks/s                     py, C
  6  failover: SIGKILL the leader under light load: s to the next ack'd publish   py (3 nodes)
  7  storing 1,000,000 messages: peak RSS per node, disk bytes per message   C
  8  acknowledged publish of 16 KiB payloads, 256 in flight                  py
mq9: request to `$mq9.AI.MAILBOX.MSG.{mail_id}.{priority}` (answered after Raft commit);
consumers subscribe to `...MSG.{mail_id}.*` (replay then live), workers use a queue group
and ack. JetStream: a file-storage stream `BENCH` over `bench.>` with R = --nodes,
`js.publish` / js_PublishAsync, ordered push consumers, and a work-queue stream `BENCHWQ`
with a durable pull consumer.

Each system runs alone (the other is stopped) on loopback ports in 19000-19999, on a
fresh cluster per phase: workloads 1-4 and 8 (and the sweep), then 5 with nats-py, 5
with nats.c, failover (6) and memory/disk (7) each on a cluster of their own.
Every wait has a deadline, every client run a time cap (a run stopped by it reports what
it did and is marked `*`), and every process is stopped in a `finally` (servers also get
SIGKILL if this harness dies). If a cluster does not come up or a workload fails, its
rows say "error", the reason is printed under the table with the node's log tail, and the
run goes on. Results: one table, and benchmarks/out/mq9_bench.json with every figure,
every client's raw output and the machine's description.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repo root: benchmarks.*, harness

from benchmarks.common.cli import run_main  # noqa: E402
from benchmarks.mq9 import run  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, choices=[1, 3], default=3, help="cluster size for both systems")
    p.add_argument("--rounds", type=int, default=1,
                   help="run everything this many times, the systems taking turns to go first; the table "
                        "shows medians and the range of the per-round ratios (this machine is noisy)")
    p.add_argument("--quick", action="store_true", help="smaller counts and time caps (a smoke test)")
    p.add_argument("--only", choices=["mq9", "js"], help="run one system only")
    p.add_argument("--workloads", default="1,2,3,4,5,6,7,8", help="comma-separated workload numbers 1-8")
    p.add_argument("--no-c", action="store_true", help="skip the nats.c variants of workloads 2, 3, 4 and 5")
    p.add_argument("--profile", action="store_true",
                   help="run each mq9 node of the main phase under py-spy -> benchmarks/out/mq9_node{N}.svg")
    p.add_argument("--window-sweep", action="store_true",
                   help="workload 2 at 1, 16, 64 and 256 in flight for both systems (+ out/window_sweep.png)")
    p.add_argument("--mq9-log-level", default="info",
                   help="mq9 nodes' --log-level (info: lifecycle lines only, needed to find the leader in the logs)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data and log directory")
    args = p.parse_args(argv)
    try:
        args.workloads = sorted({int(x) for x in args.workloads.split(",") if x.strip()})
    except ValueError:
        p.error("--workloads takes numbers 1-8, e.g. 1,2,5")
    if not args.workloads or any(not 1 <= w <= 8 for w in args.workloads):
        p.error("--workloads takes numbers 1-8, e.g. 1,2,5")
    return args


if __name__ == "__main__":
    run_main(parse_args, run.main)
