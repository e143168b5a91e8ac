"""What mq9_bench.py runs: names both systems share, run sizes, table rows, phases.

Sizes are (count, time cap in seconds) per workload, for a full and a quick run.
Acknowledged-publish runs stop issuing at their duration; other runs stop at their
deadline and report what they did, marked "*". Each phase runs on a fresh cluster: a
work-queue run can leave state behind (unfinished tasks, redeliveries) that slows what
follows, a failover kills a node, and memory/disk wants a clean baseline.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from benchmarks.common import BENCH, OUT

CLIENTS = BENCH / "mq9_clients.py"
JSON_OUT = OUT / "mq9_bench.json"
SWEEP_PNG = OUT / "window_sweep.png"
# (subjects and streams: benchmarks/clients/subjects.py, shared with the client processes)

# Workload 5: the same ceiling on unacknowledged tasks for both systems. JetStream's durable
# consumer has max_ack_pending for all its workers together; mq9's max_in_flight is per
# queue-group member, so each of the WQ_WORKERS members gets an equal share.
WQ_WORKERS = 4
WQ_MAX_UNACKED = 1000
SWEEP_WINDOWS = (1, 16, 64, 256)
SYSTEM_LABEL = {"js": "JetStream", "mq9": "mq9"}


@dataclass(frozen=True)
class Sizes:
    """(count, time cap in seconds) per workload; *_s: a time cap alone."""

    w1: tuple[int, float] = (3_000, 8)
    w2: tuple[int, float] = (60_000, 12)
    w2c: tuple[int, float] = (200_000, 15)
    w3: tuple[int, float] = (20_000, 30)
    w3c: tuple[int, float] = (50_000, 25)
    w4: tuple[int, float] = (100_000, 45)
    w4_fill_s: float = 120
    w5: tuple[int, float] = (20_000, 60)
    w5c: tuple[int, float] = (20_000, 60)
    w6_s: float = 40
    w7: tuple[int, float] = (1_000_000, 200)
    w8: tuple[int, float] = (10_000, 12)
    sweep: tuple[int, float] = (20_000, 6)


FULL = Sizes()
QUICK = Sizes(w1=(300, 3), w2=(10_000, 4), w2c=(40_000, 5), w3=(3_000, 8), w3c=(10_000, 8), w4=(20_000, 15),
              w4_fill_s=40, w5=(3_000, 12), w5c=(3_000, 12), w6_s=25, w7=(100_000, 45), w8=(2_000, 4),
              sweep=(5_000, 3))


@dataclass(frozen=True)
class Row:
    key: str        # result key
    title: str
    client: str
    metric: str
    unit: str
    better: str     # "higher" or "lower"


def table_rows(sweep: bool) -> list[Row]:
    rows = [
        Row("w1", "1 ack'd publish, 1 in flight", "nats-py", "rate", "msgs/s", "higher"),
        Row("w1", "1 ack'd publish, 1 in flight: p50", "nats-py", "p50_ms", "ms", "lower"),
        Row("w1", "1 ack'd publish, 1 in flight: p99", "nats-py", "p99_ms", "ms", "lower"),
        Row("w2", "2 ack'd publish, 256 in flight", "nats-py", "rate", "msgs/s", "higher"),
        Row("w2c", "2 ack'd publish, 256 in flight", "nats.c", "rate", "msgs/s", "higher"),
        Row("w3", "3 fan-out to 10 subscribers", "nats-py", "rate", "deliveries/s", "higher"),
        Row("w3c", "3 fan-out to 10 subscribers", "nats.c", "rate", "deliveries/s", "higher"),
        Row("w4", "4 catch-up of {w4} stored msgs", "nats-py", "rate", "msgs/s", "higher"),
        Row("w4c", "4 catch-up of {w4} stored msgs", "nats.c", "rate", "msgs/s", "higher"),
        Row("w5", "5 work queue, 4 workers acking", "nats-py", "rate", "tasks/s", "higher"),
        Row("w5c", "5 work queue, 4 workers acking", "nats.c", "rate", "tasks/s", "higher"),
        Row("w6", "6 failover: leader SIGKILL -> next ack", "nats-py", "recovery_s", "s", "lower"),
        Row("w7", "7 store {w7} msgs: rate", "nats.c", "rate", "msgs/s", "higher"),
        Row("w7", "7 store {w7} msgs: peak RSS (max node)", "nats.c", "peak_rss_mib", "MiB", "lower"),
        Row("w7", "7 store {w7} msgs: disk per msg per node", "nats.c", "disk_bytes_per_msg", "bytes", "lower"),
        Row("w8", "8 ack'd publish 16 KiB, 256 in flight", "nats-py", "rate", "msgs/s", "higher"),
    ]
    if sweep:
        for w in SWEEP_WINDOWS:
            rows.append(Row(f"sweep{w}", f"2 sweep: {w} in flight", "nats-py", "rate", "msgs/s", "higher"))
            rows.append(Row(f"sweep{w}", f"2 sweep: {w} in flight: p99", "nats-py", "p99_ms", "ms", "lower"))
    return rows


# (phase, its workload keys); each phase on a fresh cluster of its own
PHASES = [
    ("main", ["w1", "w2", "w2c", "w8", "sweep", "w3", "w3c", "w4", "w4c"]),
    ("workqueue", ["w5"]),
    ("workqueue-c", ["w5c"]),
    ("failover", ["w6"]),
    ("memory", ["w7"]),
]


def phase_keys(args: argparse.Namespace, keys: list[str]) -> list[str]:
    out = []
    nums = set(args.workloads)
    for k in keys:
        if k == "sweep":
            if args.window_sweep:
                out += [f"sweep{w}" for w in SWEEP_WINDOWS]
        elif int(k[1]) in nums and not (args.no_c and k.endswith("c")):
            out.append(k)
    return out
