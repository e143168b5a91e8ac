"""core_nats.py's workloads and how one client run of them is made and read.

A workload is a client (nats-py: benchmarks/natspy_bench.py, or nats.c: natsbench),
a mode (pub, fanout, reqrep), counts for a full and a quick run, and with --cluster the
mq9/nats-server ratio aimed for. Each client run is a process of its own with a
deadline and a timeout beyond it; it prints one JSON line, and a run without one
becomes {"error": ...}, so a failure is a row in the report, not a crash. Of several
runs the best complete one counts (else the best partial one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

from benchmarks.common import BENCH, NATSBENCH, REPO
from harness.process import die_with_parent

NATSPY = BENCH / "natspy_bench.py"
REPEATS = 3


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    client: str          # "nats-py" or "nats.c"
    mode: str            # pub, fanout, reqrep
    count: int
    quick_count: int
    subs: int = 1
    concurrency: int = 1
    size: int = 128
    target: float | None = None  # the mq9/nats-server ratio aimed for (--cluster)

    @property
    def unit(self) -> str:
        return "trips/s" if self.mode == "reqrep" else "msgs/s"


WORKLOADS = [
    Workload("py_pub", "pub, 1 subscriber", "nats-py", "pub", 200_000, 50_000),
    Workload("py_fanout", "fan-out, 10 subs", "nats-py", "fanout", 20_000, 5_000, subs=10),
    Workload("py_reqrep", "req/rep, 1 in flight", "nats-py", "reqrep", 5_000, 1_000),
    Workload("py_reqrep64", "req/rep, 64 in flight", "nats-py", "reqrep", 20_000, 5_000, concurrency=64),
    Workload("c_pub", "pub, 1 subscriber", "nats.c", "pub", 2_000_000, 200_000),
    Workload("c_fanout", "fan-out, 10 subs", "nats.c", "fanout", 200_000, 20_000, subs=10),
    Workload("c_reqrep", "req/rep, 1 in flight", "nats.c", "reqrep", 5_000, 1_000),
    Workload("c_reqrep64", "req/rep, 64 in flight", "nats.c", "reqrep", 20_000, 5_000, concurrency=64),
]


# --cluster: publisher/requester on node 1, subscriber/responder on node 2
PUB_TARGET, REQREP_TARGET = 0.25, 0.5
CLUSTER_WORKLOADS = [
    Workload("x_py_pub", "pub, 1 subscriber on node 2", "nats-py", "pub", 150_000, 20_000, target=PUB_TARGET),
    Workload("x_py_reqrep", "req/rep via node 2, 1 in flight", "nats-py", "reqrep", 4_000, 1_000,
             target=REQREP_TARGET),
    Workload("x_py_reqrep64", "req/rep via node 2, 64 in flight", "nats-py", "reqrep", 15_000, 3_000,
             concurrency=64, target=REQREP_TARGET),
    Workload("x_c_pub", "pub, 1 subscriber on node 2", "nats.c", "pub", 1_500_000, 100_000, target=PUB_TARGET),
    Workload("x_c_reqrep", "req/rep via node 2, 1 in flight", "nats.c", "reqrep", 4_000, 1_000,
             target=REQREP_TARGET),
    Workload("x_c_reqrep64", "req/rep via node 2, 64 in flight", "nats.c", "reqrep", 15_000, 3_000,
             concurrency=64, target=REQREP_TARGET),
]
CLUSTER_NODES = 3


def client_command(w: Workload, url: str, count: int, deadline: float, sub_url: str | None = None) -> list[str]:
    if w.client == "nats-py":
        cmd = [sys.executable, str(NATSPY), w.mode, "--url", url, "--count", str(count), "--size", str(w.size),
               "--subs", str(w.subs), "--concurrency", str(w.concurrency), "--timeout", str(deadline)]
        return cmd + (["--sub-url", sub_url] if sub_url else [])
    cmd = [str(NATSBENCH), "-m", w.mode, "-u", url, "-n", str(count), "-s", str(w.size),
           "-k", str(w.subs), "-w", str(w.concurrency), "-t", str(deadline)]
    return cmd + (["-U", sub_url] if sub_url else [])


def run_client(w: Workload, url: str, count: int, deadline: float, sub_url: str | None = None) -> dict:
    """One client run; always returns a dict, with "error" when there is no figure.

    sub_url: where the subscribers/responder connect (another node); None = url."""
    cmd = client_command(w, url, count, deadline, sub_url)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=deadline + 30, cwd=REPO,
                              preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        return {"error": f"client did not finish within {deadline + 30:.0f}s (killed)"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"client exited {proc.returncode} without a result: " + " | ".join(tail)}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"error": f"unparsable client output {lines[-1][:200]!r}: {exc}"}


def best_of(runs: list[dict]) -> dict | None:
    """The fastest complete run; else the fastest partial one; None if all failed."""
    ok = [r for r in runs if "error" not in r]
    complete = [r for r in ok if r.get("complete")]
    pool = complete or ok
    return max(pool, key=lambda r: r.get("rate", 0.0)) if pool else None
