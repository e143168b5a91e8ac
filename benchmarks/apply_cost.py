"""What one work-queue task costs apply, in-process: µs, or instructions under callgrind.

The work-queue shape of workload 5 without nodes, sockets or Raft: a mailbox with one queue
group of 4 members (250 in flight each), N stores in batches of `--store-batch`, then
acknowledgements of whatever was handed out, in batches of `--ack-batch`, until every task
is acknowledged. Each batch goes through `encode_batch` / `decode_batch` and
`State.apply_batch` on a real RocksDB store, as on a node.

Wall-clock figures on a shared 2-core VM move by 30% between runs; `--instructions` runs
the same workload under valgrind's callgrind twice (N tasks and none) and prints the
difference per task, which moves by well under 1% and so shows a change of a few percent.

    .venv/bin/python benchmarks/apply_cost.py                 # µs per task, best of 3
    .venv/bin/python benchmarks/apply_cost.py --instructions  # needs valgrind (apt-get install valgrind)

The defaults (256 stores, 64 acks per entry) are the shape of earlier figures; a three-node
work queue fed by the C client produces about 1,024 stores and 150 acks per entry:
`--instructions --tasks 8000 --store-batch 1024 --ack-batch 150`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster import commands as c  # noqa: E402
from cluster.effects import MessageAssigned  # noqa: E402
from cluster.state import State  # noqa: E402
from cluster.store import Store  # noqa: E402

MEMBERS = 4
MAX_IN_FLIGHT = 250


def run(tasks: int, store_batch: int, ack_batch: int) -> tuple[float, float]:
    """Apply the workload once; (µs per store, µs per ack including its next hand-out)."""
    workdir = tempfile.mkdtemp(prefix="apply-cost-")
    state = State(Store(os.path.join(workdir, "db")))
    index = 0

    def apply(commands: list) -> list:
        nonlocal index
        index += 1
        blob = c.encode_batch(c.Batch(1000 + index, "origin", index, commands))
        return state.apply_batch(c.decode_batch(blob), index)[1]

    try:
        apply([c.CreateMailbox("box", 0, False, "", "", 30_000, MAX_IN_FLIGHT)])
        for m in range(MEMBERS):
            apply([c.GroupJoin("box", "workers", f"n1/boot/{m}/1", "n1")])
        payload = b"x" * 128
        handed: list[int] = []
        t0 = time.perf_counter()
        for start in range(0, tasks, store_batch):
            effects = apply([c.StoreMessage("box", c.NORMAL, None, payload)
                             for _ in range(min(store_batch, tasks - start))])
            handed += [e.seq for e in effects if type(e) is MessageAssigned]
        t1 = time.perf_counter()
        acked = 0
        while handed:
            chunk, handed = handed[:ack_batch], handed[ack_batch:]
            effects = apply([c.Ack("box", seq, c.ACK, "workers") for seq in chunk])
            acked += len(chunk)
            handed += [e.seq for e in effects if type(e) is MessageAssigned]
        t2 = time.perf_counter()
        if acked != tasks:
            raise SystemExit(f"only {acked} of {tasks} tasks were handed out and acknowledged")
        return (t1 - t0) / max(tasks, 1) * 1e6, (t2 - t1) / max(acked, 1) * 1e6
    finally:
        state.store.close()
        shutil.rmtree(workdir, ignore_errors=True)


def instructions(args: argparse.Namespace) -> int:
    """Instructions per task: callgrind totals with `tasks` and with 0 tasks, differenced."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind: apt-get install -y valgrind")
    totals = []
    with tempfile.TemporaryDirectory() as out:
        for tasks in (args.tasks, 0):
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", sys.executable, __file__,
                   "--once", "--tasks", str(tasks), "--store-batch", str(args.store_batch),
                   "--ack-batch", str(args.ack_batch)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = re.search(r"Collected : (\d+)", proc.stderr)
            if proc.returncode != 0 or not found:
                raise SystemExit(f"callgrind run failed:\n{proc.stderr[-2000:]}")
            totals.append(int(found.group(1)))
    return (totals[0] - totals[1]) // args.tasks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=20_000, help="tasks stored and acknowledged")
    p.add_argument("--store-batch", type=int, default=256, help="stores per Raft entry")
    p.add_argument("--ack-batch", type=int, default=64, help="acknowledgements per Raft entry")
    p.add_argument("--instructions", action="store_true",
                   help="instructions per task under callgrind (4,000 tasks unless --tasks)")
    p.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.once:
        run(args.tasks, args.store_batch, args.ack_batch)
        return
    if args.instructions:
        if "--tasks" not in sys.argv:
            args.tasks = 4_000  # callgrind runs about 50x slower
        print(f"{instructions(args):,} instructions per task (store, hand-out, ack), {args.tasks:,} tasks")
        return
    best = min((run(args.tasks, args.store_batch, args.ack_batch) for _ in range(3)), key=sum)
    print(f"store {best[0]:.1f} µs, ack with the next hand-out {best[1]:.1f} µs: "
          f"{sum(best):.1f} µs per task (best of 3, {args.tasks:,} tasks)")


if __name__ == "__main__":
    main()
