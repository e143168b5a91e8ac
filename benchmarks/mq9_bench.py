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
import asyncio
import json
import os
import queue
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import core_nats as core  # noqa: E402  (packages, natsbench build, ports, process helpers)
from core_nats import BenchError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

REPO = BENCH.parent
OUT = BENCH / "out"
CLIENTS = BENCH / "mq9_clients.py"
NATSBENCH = core.NATSBENCH
JSON_OUT = OUT / "mq9_bench.json"
SWEEP_PNG = OUT / "window_sweep.png"
STREAM = "BENCH"
WQ_STREAM = "BENCHWQ"
WQ_SUBJECT = "benchwq.tasks"
# Workload 5: the same ceiling on unacknowledged tasks for both systems. JetStream's durable
# consumer has max_ack_pending for all its workers together; mq9's max_in_flight is per
# queue-group member, so each of the WQ_WORKERS members gets an equal share.
WQ_WORKERS = 4
WQ_MAX_UNACKED = 1000
MQ9_MSG = "$mq9.AI.MAILBOX.MSG."
SWEEP_WINDOWS = (1, 16, 64, 256)
SYSTEM_LABEL = {"js": "JetStream", "mq9": "mq9"}

console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


# ---- run sizes -----------------------------------------------------------------------------
# (count, time cap in seconds). Acknowledged-publish runs stop issuing at their duration;
# other runs stop at their deadline and report what they did, marked "*".

@dataclass(frozen=True)
class Sizes:
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


# ---- the table -----------------------------------------------------------------------------

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


# ---- processes -----------------------------------------------------------------------------


def _read_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


class Proc:
    """One server process with its log file; SIGKILLed if this harness dies."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self.env = env or dict(os.environ)
        self.proc: subprocess.Popen | None = None
        self.killed_by_us = False
        self.profiler: subprocess.Popen | None = None
        self.profile_svg: Path | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"---- {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=REPO, preexec_fn=core._die_with_parent,
                                         start_new_session=True)

    def attach_profiler(self, py_spy: str, svg: Path) -> None:
        """py-spy record --pid: it writes the flame graph when the node exits."""
        self.profile_svg = svg
        with open(self.log_path.with_suffix(".py-spy.log"), "ab") as log:
            self.profiler = subprocess.Popen([py_spy, "record", "--pid", str(self.pid), "-o", str(svg)],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=core._die_with_parent, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.killed_by_us = True
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.killed_by_us = True
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        if self.profiler is not None and self.profiler.poll() is None:
            try:
                self.profiler.wait(60)  # py-spy writes the SVG after its target exits
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait(10)

    def memory(self) -> dict[str, int]:
        return _read_status(self.pid) if self.alive() else {}

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_ports(nodes: list[Proc], ports: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(range(len(nodes)))
    while pending and time.monotonic() < deadline:
        for i in list(pending):
            if not nodes[i].alive():
                raise BenchError(f"{nodes[i].name} exited with {nodes[i].proc.returncode} before accepting "
                                 f"clients; its log ends:\n{nodes[i].log_tail()}")
            if core.port_open(ports[i]):
                pending.discard(i)
        time.sleep(0.05)
    if pending:
        names = ", ".join(nodes[i].name for i in sorted(pending))
        raise BenchError(f"{names} did not accept clients within {timeout:.0f}s; log of "
                         f"{nodes[min(pending)].name}:\n{nodes[min(pending)].log_tail()}")


def arun(coro, timeout: float):
    """Run one admin coroutine to completion with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def nats_connect(url: str):
    import nats

    async def quiet(exc: Exception) -> None:
        pass

    return await asyncio.wait_for(nats.connect(url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=1,
                                               error_cb=quiet), 10)


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # compaction removed it meanwhile
    return total


# ---- clusters ------------------------------------------------------------------------------


class Cluster:
    system = ""

    def __init__(self, n: int, workdir: Path) -> None:
        self.n = n
        self.workdir = workdir
        self.nodes: list[Proc] = []
        self.ports: list[int] = []
        self.data_dirs: list[Path] = []
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def stop(self) -> None:
        core.stop_all(self.nodes)

    def broken(self) -> str | None:
        """Why the cluster can no longer be measured (a node died on its own), or None."""
        for node in self.nodes:
            if not node.killed_by_us and node.proc is not None and node.proc.poll() is not None:
                return (f"{node.name} exited with {node.proc.returncode} during the run; its log ends:\n"
                        f"{node.log_tail()}")
        return None

    def log_tails(self, lines: int = 12) -> str:
        return "\n".join(f"--- {n.name} ({n.log_path})\n{n.log_tail(lines)}" for n in self.nodes)

    def describe(self) -> dict:
        return {"system": self.system, "nodes": self.n, "urls": self.urls,
                "logs": [str(n.log_path) for n in self.nodes]}


class Mq9Cluster(Cluster):
    system = "mq9"

    def __init__(self, n: int, workdir: Path, log_level: str, py_spy: str | None = None) -> None:
        super().__init__(n, workdir)
        self.log_level = log_level
        self.py_spy = py_spy
        self.raft_ports = [core.free_port() for _ in range(n)]
        self.ports = [core.free_port() for _ in range(n)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        for i in range(n):
            data = workdir / f"n{i + 1}"
            self.data_dirs.append(data)
            peers = [a for j in range(n) if j != i for a in ("--peer", f"127.0.0.1:{self.raft_ports[j]}")]
            cmd = [sys.executable, "-m", "node.cli", "serve", "--name", f"n{i + 1}",
                   "--listen", f"127.0.0.1:{self.ports[i]}", "--data", str(data),
                   "--raft", f"127.0.0.1:{self.raft_ports[i]}", *peers, "--log-level", log_level]
            self.nodes.append(Proc(f"mq9 n{i + 1}", cmd, workdir / f"n{i + 1}.log", env))
        self._cli_status: bool | None = None

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        if self.py_spy:
            OUT.mkdir(parents=True, exist_ok=True)
            for i, node in enumerate(self.nodes):
                node.attach_profiler(self.py_spy, OUT / f"mq9_node{i + 1}.svg")
        wait_ports(self.nodes, self.ports, max(1.0, deadline - time.monotonic()))
        # ready = every node commits a write through Raft (a leader exists, the node reaches it)
        last: dict[int, str] = {}
        for i in range(self.n):
            while True:
                if not self.nodes[i].alive():
                    raise BenchError(f"{self.nodes[i].name} exited with {self.nodes[i].proc.returncode} while "
                                     f"the cluster formed:\n{self.nodes[i].log_tail()}")
                try:
                    reply = arun(self._create(self.urls[i], "bench.ready", {}), 6)
                    if "error" not in reply:
                        break
                    last[i] = json.dumps(reply)
                except Exception as exc:
                    last[i] = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > deadline:
                    raise BenchError(f"mq9 node n{i + 1} could not store a write within {timeout:.0f}s "
                                     f"(last answer: {last.get(i)}); logs:\n{self.log_tails()}")
                time.sleep(0.25)

    @staticmethod
    async def _create(url: str, name: str, extra: dict) -> dict:
        nc = await nats_connect(url)
        try:
            msg = await nc.request("$mq9.AI.MAILBOX.CREATE", json.dumps({"ttl": 0, "name": name, **extra}).encode(),
                                   timeout=5)
            return json.loads(msg.data)
        finally:
            await nc.close()

    def create_mailbox(self, name: str, **extra) -> str:
        """Create through the first node; a 503 (no leader right now) is retried for up to 20 s."""
        deadline = time.monotonic() + 20
        tries = 0
        while True:
            tries += 1
            try:
                reply = arun(self._create(self.urls[0], name, extra), 20)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}", "code": 503}
            if "error" not in reply:
                if tries > 1:
                    console.print(f"[yellow]  (setup: creating {name} took {tries} tries: the cluster "
                                  "answered 503 meanwhile)[/]")
                return reply["mail_id"]
            if reply.get("code") != 503 or time.monotonic() > deadline:
                raise BenchError(f"creating mailbox {name} failed after {tries} tries: {reply}")
            time.sleep(0.5)

    def mailbox_total(self, name: str, node: int = 0, timeout: float = 60) -> int | None:
        async def info() -> int | None:
            nc = await nats_connect(self.urls[node])
            try:
                msg = await nc.request(f"$mq9.AI.MAILBOX.INFO.{name}", b"", timeout=timeout)
                return json.loads(msg.data).get("total")
            finally:
                await nc.close()
        return arun(info(), timeout + 10)

    def wait_total(self, name: str, expected: int, node: int, timeout: float) -> int | None:
        """Poll INFO on `node` until the mailbox holds `expected` messages (replicas apply asynchronously)."""
        deadline = time.monotonic() + timeout
        total = None
        while time.monotonic() < deadline:
            try:
                total = self.mailbox_total(name, node, timeout=max(2.0, deadline - time.monotonic()))
            except Exception:
                total = None
            if total is not None and total >= expected:
                return total
            time.sleep(0.3)
        return total

    # -- who leads: the CLI if it has a status command, else the logs, else PySyncObj's admin port

    def leader_index(self) -> tuple[int | None, str]:
        for method in (self._leader_from_cli, self._leader_from_logs, self._leader_from_syncobj):
            try:
                idx = method()
            except Exception:
                idx = None
            if idx is not None and self.nodes[idx].alive():
                return idx, method.__name__.replace("_leader_from_", "")
        return None, "none"

    def _match_node(self, value: str) -> int | None:
        for i in range(self.n):
            if value in (f"127.0.0.1:{self.raft_ports[i]}", f"127.0.0.1:{self.ports[i]}", f"n{i + 1}",
                         self.urls[i]):
                return i
        return None

    def _leader_from_cli(self) -> int | None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        if self._cli_status is None:
            probe = subprocess.run([sys.executable, "-m", "node.cli", "cluster", "status", "--help"],
                                   capture_output=True, text=True, timeout=20, cwd=REPO, env=env)
            self._cli_status = probe.returncode == 0
        if not self._cli_status:
            return None
        for i in range(self.n):
            if not self.nodes[i].alive():
                continue
            proc = subprocess.run([sys.executable, "-m", "node.cli", "cluster", "status", "--server", self.urls[i],
                                   "--json"], capture_output=True, text=True, timeout=20, cwd=REPO, env=env)
            if proc.returncode != 0:
                continue
            found = self._find_leader(json.loads(proc.stdout))
            if found is not None:
                return found
        return None

    def _find_leader(self, obj) -> int | None:
        """Any "leader" value naming one of our nodes, or a node entry whose state/role is leader."""
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k == "leader" and isinstance(v, str) and self._match_node(v) is not None:
                    return self._match_node(v)
            if str(obj.get("state", obj.get("role", ""))).lower() == "leader":
                for k in ("node", "name", "raft", "address", "url", "self"):
                    if isinstance(obj.get(k), str) and self._match_node(obj[k]) is not None:
                        return self._match_node(obj[k])
            for v in obj.values():
                found = self._find_leader(v)
                if found is not None:
                    return found
        elif isinstance(obj, list):
            for v in obj:
                found = self._find_leader(v)
                if found is not None:
                    return found
        return None

    _STATE_LINE = re.compile(r"(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) \[\w+\] Raft state \w+ -> (\w+)")

    def _leader_from_logs(self) -> int | None:
        """Each node's last "Raft state X -> Y" line is its role now (needs --mq9-log-level info)."""
        best: tuple[str, int] | None = None
        for i, node in enumerate(self.nodes):
            if not node.alive():
                continue
            try:
                text = node.log_path.read_text(errors="replace")
            except OSError:
                continue
            matches = self._STATE_LINE.findall(text)
            if matches and matches[-1][1] == "leader" and (best is None or matches[-1][0] > best[0]):
                best = (matches[-1][0], i)
        return best[1] if best else None

    def _leader_from_syncobj(self) -> int | None:
        admin = Path(sys.executable).parent / "syncobj_admin"
        if not admin.exists():
            return None
        for i in range(self.n):
            if not self.nodes[i].alive():
                continue
            proc = subprocess.run([str(admin), "-conn", f"127.0.0.1:{self.raft_ports[i]}", "-status"],
                                  capture_output=True, text=True, timeout=10)
            m = re.search(r"^leader: (\S+)", proc.stdout, re.M)
            if m and self._match_node(m.group(1)) is not None:
                return self._match_node(m.group(1))
        return None


class JsCluster(Cluster):
    system = "js"

    def __init__(self, n: int, workdir: Path) -> None:
        super().__init__(n, workdir)
        exe = core.nats_server_path()
        if not exe:
            raise BenchError("nats-server is not installed (apt-get install -y nats-server)")
        self.ports = [core.free_port() for _ in range(n)]
        self.cluster_ports = [core.free_port() for _ in range(n)]
        for i in range(n):
            store = workdir / f"js{i + 1}"
            self.data_dirs.append(store)
            conf = workdir / f"js{i + 1}.conf"
            lines = [f'server_name: "js{i + 1}"', f"listen: 127.0.0.1:{self.ports[i]}",
                     "jetstream {", f'  store_dir: "{store}"', "  max_memory_store: 1GB", "  max_file_store: 32GB", "}"]
            if n > 1:
                routes = ", ".join(f"nats-route://127.0.0.1:{self.cluster_ports[j]}" for j in range(n) if j != i)
                lines += ["cluster {", '  name: "bench"', f"  listen: 127.0.0.1:{self.cluster_ports[i]}",
                          f"  routes: [{routes}]", "}"]
            conf.write_text("\n".join(lines) + "\n")
            self.nodes.append(Proc(f"nats-server js{i + 1}", [exe, "-c", str(conf)], workdir / f"js{i + 1}.log"))

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start()
        wait_ports(self.nodes, self.ports, max(1.0, deadline - time.monotonic()))
        last = ""
        while True:
            for node in self.nodes:
                if not node.alive():
                    raise BenchError(f"{node.name} exited with {node.proc.returncode}:\n{node.log_tail()}")
            try:
                arun(self._create_stream(), 15)
                return
            except Exception as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise BenchError(f"JetStream did not become ready within {timeout:.0f}s (last: {last}); "
                                 f"logs:\n{self.log_tails()}")
            time.sleep(0.3)

    async def _create_stream(self) -> None:
        """JetStream answers on every server, the stream exists and (R3) every replica is current."""
        from nats.js.api import StorageType, StreamConfig

        for url in self.urls:
            nc = await nats_connect(url)
            try:
                msg = await nc.request("$JS.API.INFO", b"", timeout=3)
                if b'"error"' in msg.data:
                    raise RuntimeError(msg.data.decode(errors="replace")[:200])
            finally:
                await nc.close()
        nc = await nats_connect(self.urls[0])
        try:
            js = nc.jetstream(timeout=5)
            try:
                await js.stream_info(STREAM)
            except Exception:
                await js.add_stream(StreamConfig(name=STREAM, subjects=["bench.>"], storage=StorageType.FILE,
                                                 num_replicas=self.n))
            info = await js.stream_info(STREAM)
            if self.n > 1:
                cl = info.cluster
                if cl is None or not cl.leader or len(cl.replicas or []) != self.n - 1 \
                        or not all(r.current for r in cl.replicas):
                    raise RuntimeError(f"stream replicas not current yet: {cl}")
        finally:
            await nc.close()

    def purge(self) -> None:
        async def go() -> None:
            nc = await nats_connect(self.urls[0])
            try:
                await nc.jetstream(timeout=10).purge_stream(STREAM)
            finally:
                await nc.close()
        arun(go(), 30)

    def stream_messages(self, stream: str = STREAM) -> int:
        async def go() -> int:
            nc = await nats_connect(self.urls[0])
            try:
                return (await nc.jetstream(timeout=10).stream_info(stream)).state.messages
            finally:
                await nc.close()
        return arun(go(), 30)

    def reset_work_queue(self, durable: str) -> None:
        """A fresh work-queue stream BENCHWQ (R = nodes) and its durable pull consumer."""
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

        async def go() -> None:
            nc = await nats_connect(self.urls[0])
            try:
                js = nc.jetstream(timeout=10)
                try:
                    await js.delete_stream(WQ_STREAM)
                except Exception:
                    pass
                await js.add_stream(StreamConfig(name=WQ_STREAM, subjects=["benchwq.>"], storage=StorageType.FILE,
                                                 num_replicas=self.n, retention=RetentionPolicy.WORK_QUEUE))
                await js.add_consumer(WQ_STREAM, ConsumerConfig(
                    durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=WQ_MAX_UNACKED,
                    filter_subject=WQ_SUBJECT))
            finally:
                await nc.close()
        deadline = time.monotonic() + 45
        while True:
            try:
                arun(go(), 30)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"could not create the work-queue stream: {type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def leader_index(self) -> tuple[int | None, str]:
        """The BENCH stream's leader from $JS.API.STREAM.INFO (cluster.leader is a server name)."""
        async def go() -> str | None:
            nc = await nats_connect(next(u for u, node in zip(self.urls, self.nodes) if node.alive()))
            try:
                msg = await nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=5)
                return (json.loads(msg.data).get("cluster") or {}).get("leader")
            finally:
                await nc.close()
        try:
            name = arun(go(), 15)
        except Exception:
            return None, "stream info failed"
        if name and name.startswith("js") and name[2:].isdigit() and 1 <= int(name[2:]) <= self.n:
            return int(name[2:]) - 1, "stream info"
        return None, f"stream info leader {name!r}"


# ---- running a client with progress --------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a live process has used so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Runner:
    """Runs client processes, feeds their "#P done total" lines into rich progress bars.

    Every result also says who was busy: the client's CPU time (`client_cpu_s`, all its
    threads) and each server process's (`server_cpu_s`, for the pids in `servers`) while
    the client ran, beside its lifetime `wall_s`. A figure whose client used a whole core
    measures the client."""

    def __init__(self, progress: Progress, workdir: Path) -> None:
        self.progress = progress
        self.workdir = workdir
        self.servers: list[int] = []  # pids of the cluster under test (run_phase sets them)

    def run(self, cmd: list[str], label: str, timeout: float, total: int | None = None,
            on_line: Callable[[str, subprocess.Popen], None] | None = None, stdin: bool = False) -> dict:
        task = self.progress.add_task(label, total=total or None)
        fd, name = tempfile.mkstemp(prefix="client-", suffix=".err", dir=self.workdir)
        os.close(fd)
        err_path = Path(name)
        lines: queue.Queue = queue.Queue()
        result_line = None
        servers_before = [cpu_seconds(pid) for pid in self.servers]
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True, cwd=REPO,
                                    env=dict(os.environ, PYTHONPATH=str(REPO)), preexec_fn=core._die_with_parent,
                                    start_new_session=True)

        def reader() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        timed_out = False
        try:
            while True:
                if time.monotonic() - started > timeout:
                    timed_out = True
                    break
                try:
                    line = lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line.startswith("#P "):
                    parts = line.split()
                    try:
                        done, tot = int(parts[1]), int(parts[2])
                        self.progress.update(task, completed=done, total=tot or None)
                    except (IndexError, ValueError):
                        pass
                elif line.startswith("{"):
                    result_line = line
                if on_line is not None:
                    on_line(line, proc)
        finally:
            if proc.poll() is None and (timed_out or result_line is None):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            if stdin and proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            self.progress.stop_task(task)
            self.progress.update(task, visible=False)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client, now reaped
        client_cpu = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
        server_cpu = [cpu_seconds(pid) - before for pid, before in zip(self.servers, servers_before)]
        stderr_tail = err_path.read_text(errors="replace").strip().splitlines()[-6:]
        err_path.unlink(missing_ok=True)
        if timed_out and result_line is None:
            return {"error": f"client did not finish within {timeout:.0f}s (killed)", "cmd": cmd}
        if result_line is None:
            return {"error": f"client exited {proc.returncode} without a result: " + " | ".join(stderr_tail),
                    "cmd": cmd}
        try:
            out = json.loads(result_line)
        except json.JSONDecodeError as exc:
            return {"error": f"unparsable client output {result_line[:200]!r}: {exc}", "cmd": cmd}
        out["cmd"] = cmd
        out["wall_s"] = round(time.monotonic() - started, 3)
        out["client_cpu_s"] = round(client_cpu, 3)
        out["server_cpu_s"] = [round(x, 3) for x in server_cpu]
        return out


def py_client(workload: str, system: str, urls: list[str], target: str, timeout: float, **kw) -> list[str]:
    cmd = [sys.executable, str(CLIENTS), workload, "--system", system, "--urls", ",".join(urls),
           "--target", target, "--timeout", str(timeout)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def c_client(mode: str, urls: list[str], subject: str, count: int, timeout: float, *extra: str) -> list[str]:
    return [str(NATSBENCH), "-m", mode, "-u", ",".join(urls), "-S", subject, "-n", str(count),
            "-t", str(timeout), "-p", *extra]


# ---- workloads -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, runner: Runner, workdir: Path) -> None:
        self.args = args
        self.sizes = QUICK if args.quick else FULL
        self.runner = runner
        self.workdir = workdir
        self.serial = 0

    def name(self, key: str) -> str:
        self.serial += 1
        return f"bench.{key}.r{self.serial}{os.urandom(2).hex()}"

    def label(self, cluster: Cluster, text: str) -> str:
        return f"{SYSTEM_LABEL[cluster.system]:>9}  {text}"

    # 1, 2, 8 and the sweep: acknowledged publishes through nats-py
    def ackpub(self, c: Cluster, key: str, window: int, count: int, duration: float, size: int = 128) -> dict:
        if c.system == "mq9":
            target = c.create_mailbox(self.name(key))
        else:
            c.purge()
            target = f"bench.{key}"
        timeout = duration + 30
        cmd = py_client("ackpub", c.system, c.urls, target, timeout, count=count, window=window,
                        duration=duration, size=size)
        return self.runner.run(cmd, self.label(c, f"{key}: ack'd publish x{window}, {size} B"), timeout + 30, count)

    def w1(self, c: Cluster) -> dict:
        count, dur = self.sizes.w1
        return self.ackpub(c, "w1", 1, count, dur)

    def w2(self, c: Cluster) -> dict:
        count, dur = self.sizes.w2
        return self.ackpub(c, "w2", 256, count, dur)

    def w8(self, c: Cluster) -> dict:
        count, dur = self.sizes.w8
        return self.ackpub(c, "w8", 256, count, dur, size=16384)

    def sweep(self, c: Cluster, window: int) -> dict:
        count, dur = self.sizes.sweep
        return self.ackpub(c, f"sweep{window}", window, count, dur)

    def w2c(self, c: Cluster) -> dict:
        count, cap = self.sizes.w2c
        if c.system == "mq9":
            subject = MQ9_MSG + c.create_mailbox(self.name("w2c")) + ".normal"
            cmd = c_client("mq9pub", c.urls[:1], subject, count, cap, "-w", "256")
        else:
            c.purge()
            cmd = c_client("jspub", c.urls[:1], "bench.w2c", count, cap, "-w", "256")
        return self.runner.run(cmd, self.label(c, "w2c: ack'd publish x256 (C)"), cap + 30, count)

    def w3(self, c: Cluster) -> dict:
        count, cap = self.sizes.w3
        target = c.create_mailbox(self.name("w3")) if c.system == "mq9" else "bench.w3"
        if c.system == "js":
            c.purge()
        cmd = py_client("fanout", c.system, c.urls, target, cap, count=count, subs=10)
        return self.runner.run(cmd, self.label(c, "w3: fan-out to 10 subscribers"), cap + 40, count * 10)

    def w3c(self, c: Cluster) -> dict:
        count, cap = self.sizes.w3c
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w3c"))
            cmd = c_client("fanout", c.urls, f"{MQ9_MSG}{box}.normal", count, cap, "-R", f"{MQ9_MSG}{box}.*",
                           "-k", "10")
        else:
            c.purge()
            cmd = c_client("jsfanout", c.urls, "bench.w3c", count, cap, "-k", "10")
        return self.runner.run(cmd, self.label(c, "w3c: fan-out to 10 subscribers (C)"), cap + 40, count * 10)

    def _w4_filled(self, c: Cluster) -> tuple[str, dict]:
        """Pre-fill workload 4's mailbox / stream once per cluster: (target, fill result).
        The nats-py and nats.c catch-ups both read it (reading consumes nothing)."""
        if getattr(c, "w4_filled", None):
            return c.w4_filled
        count = self.sizes.w4[0]
        fill_s = self.sizes.w4_fill_s
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w4"))
            subjects = ",".join(f"{MQ9_MSG}{box}.{w}" for w in ("critical", "normal", "low"))
            fill = c_client("load", c.urls[:1], subjects, count, fill_s, "-b", "10000")
            target = box
        else:
            c.purge()
            subjects = ",".join(f"bench.w4.{w}" for w in ("critical", "normal", "low"))
            fill = c_client("jspub", c.urls[:1], subjects, count, fill_s, "-w", "1024")
            target = "bench.w4.>"
        filled = self.runner.run(fill, self.label(c, "w4: pre-filling (C, not timed)"), fill_s + 30, count)
        if "error" in filled or not filled.get("complete"):
            raise BenchError(f"pre-fill failed: {filled.get('error') or filled}")
        # the subscriber reads from the last node: wait until it has applied everything
        if c.system == "mq9":
            total = c.wait_total(target, count, len(c.urls) - 1, 30)
            if total != count:
                raise BenchError(f"after the pre-fill node n{len(c.urls)} holds {total} of {count} messages")
        else:
            stored = c.stream_messages()
            if stored != count:
                raise BenchError(f"after the pre-fill the stream holds {stored} of {count} messages")
        c.w4_filled = (target, filled)
        return c.w4_filled

    def w4(self, c: Cluster) -> dict:
        count, cap = self.sizes.w4
        target, filled = self._w4_filled(c)
        cmd = py_client("catchup", c.system, c.urls, target, cap, count=count)
        out = self.runner.run(cmd, self.label(c, f"w4: catch-up of {count:,} msgs"), cap + 30, count)
        out["fill"] = filled
        return out

    def w4c(self, c: Cluster) -> dict:
        count, cap = self.sizes.w4
        target, filled = self._w4_filled(c)
        if c.system == "mq9":
            cmd = c_client("catchup", c.urls, f"{MQ9_MSG}{target}.*", count, cap)
        else:
            cmd = c_client("jscatchup", c.urls, target, count, cap)
        out = self.runner.run(cmd, self.label(c, f"w4c: catch-up of {count:,} msgs (C)"), cap + 30, count)
        out["fill"] = filled
        return out

    def w5(self, c: Cluster) -> dict:
        count, cap = self.sizes.w5
        if c.system == "mq9":
            target = c.create_mailbox(self.name("w5"), ack_wait=30, max_in_flight=WQ_MAX_UNACKED // WQ_WORKERS)
        else:
            target = "workers"
            c.reset_work_queue(target)
        cmd = py_client("workqueue", c.system, c.urls, target, cap, count=count, workers=WQ_WORKERS, batch=64)
        return self.runner.run(cmd, self.label(c, "w5: work queue, 4 workers"), cap + 40, count)

    def w5c(self, c: Cluster) -> dict:
        """Run once more if the C client died of a signal: nats.c 3.4.1 aborted with a double
        free inside its JetStream pull fetch in about one run in six (never with mq9)."""
        out = self._w5c_once(c)
        if "exited -" in str(out.get("error", "")):
            console.print(f"[yellow]  w5c: the C client crashed ({out['error'][:90]}); running it again[/]")
            first = out["error"]
            out = self._w5c_once(c)
            out["retried_after"] = first
        return out

    def _w5c_once(self, c: Cluster) -> dict:
        count, cap = self.sizes.w5c
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w5c"), ack_wait=30, max_in_flight=WQ_MAX_UNACKED // WQ_WORKERS)
            cmd = c_client("mq9wq", c.urls, f"{MQ9_MSG}{box}.normal", count, cap, "-R", f"{MQ9_MSG}{box}.*",
                           "-k", str(WQ_WORKERS), "-q", "workers")
        else:
            c.reset_work_queue("cworkers")
            cmd = c_client("jswq", c.urls, WQ_SUBJECT, count, cap, "-D", f"{WQ_STREAM}:cworkers", "-k", str(WQ_WORKERS),
                           "-B", "64")
        return self.runner.run(cmd, self.label(c, "w5c: work queue, 4 workers (C)"), cap + 40, count)

    def w6(self, c: Cluster) -> dict:
        if c.n < 3:
            return {"na": "n/a (1 node)"}
        target = c.create_mailbox(self.name("w6")) if c.system == "mq9" else "bench.w6"
        leader, method = c.leader_index()
        if leader is None:
            return {"error": f"could not find the leader ({method})"}
        client_node = (leader + 1) % c.n
        state: dict = {"killed": None, "leader": leader, "method": method}

        def on_line(line: str, proc: subprocess.Popen) -> None:
            if state["killed"] is not None or not line.startswith("#P "):
                return
            if int(line.split()[1]) < 30:  # ~0.5 s of steady acknowledged publishes first
                return
            now_leader, how = c.leader_index()  # it may have moved meanwhile
            victim = now_leader if now_leader is not None and now_leader != client_node else state["leader"]
            state.update(leader=victim, method=how if now_leader is not None else state["method"])
            t_kill = time.monotonic()
            c.nodes[victim].kill()
            state["killed"] = t_kill
            try:
                proc.stdin.write(f"kill {t_kill}\n")
                proc.stdin.flush()
            except OSError:
                pass

        timeout = self.sizes.w6_s
        cmd = py_client("failover", c.system, [c.urls[client_node]], target, timeout, interval=0.01,
                        request_timeout=1.0, after=0.5)
        out = self.runner.run(cmd, self.label(c, "w6: failover (kill the leader)"), timeout + 30, None,
                              on_line=on_line, stdin=True)
        out["killed_node"] = c.nodes[state["leader"]].name
        out["leader_found_by"] = state["method"]
        out["client_node"] = c.nodes[client_node].name
        if state["killed"] is None and "error" not in out:
            out["error"] = "the leader was never killed (the client did not reach a steady state)"
        try:
            new_leader, _ = c.leader_index()
            out["new_leader"] = c.nodes[new_leader].name if new_leader is not None else None
        except Exception:
            pass
        if "error" in out and state["killed"] is not None:
            out["log_tails"] = c.log_tails()
        return out

    def w7(self, c: Cluster) -> dict:
        count, cap = self.sizes.w7
        if c.system == "mq9":
            box = c.create_mailbox(self.name("w7"))
            cmd = c_client("load", c.urls[:1], f"{MQ9_MSG}{box}.normal", count, cap, "-b", "20000")
        else:
            c.purge()
            cmd = c_client("jspub", c.urls[:1], "bench.w7", count, cap, "-w", "4096")
        time.sleep(0.5)
        disk0 = [dir_bytes(d) for d in c.data_dirs]
        mem0 = [n.memory() for n in c.nodes]
        peaks = [m.get("VmRSS", 0) for m in mem0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for i, node in enumerate(c.nodes):
                    peaks[i] = max(peaks[i], node.memory().get("VmRSS", 0))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out = self.runner.run(cmd, self.label(c, f"w7: storing {count:,} msgs (C)"), cap + 30, count)
            if "error" in out:
                return out
            stored = out.get("flushed", out.get("completed", 0))
            # let followers apply and files settle (mq9 followers apply asynchronously)
            if c.system == "mq9":
                totals = [c.wait_total(box, stored, i, 60) for i in range(c.n)]
                out["stored_per_node"] = totals
            else:
                out["stored_in_stream"] = c.stream_messages()
            last = None
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                sizes = [dir_bytes(d) for d in c.data_dirs]
                if sizes == last:
                    break
                last = sizes
                time.sleep(1.0)
        finally:
            stop.set()
            sampler.join(5)
        hwm = [n.memory().get("VmHWM", 0) for n in c.nodes]
        grew = [s - s0 for s, s0 in zip(last, disk0)]
        mib = 1 << 20
        out.update({
            "messages": stored,
            "peak_rss_mib": round(max(max(peaks), max(hwm)) / mib, 1),
            "peak_rss_per_node_mib": [round(max(p, h) / mib, 1) for p, h in zip(peaks, hwm)],
            "rss_before_mib": [round(m.get("VmRSS", 0) / mib, 1) for m in mem0],
            "disk_bytes_per_node": last,
            "disk_growth_per_node": grew,
            "disk_bytes_per_msg": round(sum(grew) / len(grew) / stored, 1) if stored else None,
        })
        return out


# ---- phases --------------------------------------------------------------------------------

# Each phase gets a fresh cluster: a work-queue run can leave state behind (unfinished tasks,
# redeliveries) that slows what follows, a failover kills a node, and memory/disk wants a
# clean baseline.
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


def run_phase(bench: Bench, system: str, phase: str, keys: list[str], results: dict, clusters: dict) -> None:
    if not keys:
        return
    args = bench.args
    workdir = bench.workdir / f"{system}-{phase}"
    try:
        if system == "mq9":
            py_spy = core.py_spy_path(install=True) if args.profile and phase == "main" else None
            cluster: Cluster = Mq9Cluster(args.nodes, workdir, args.mq9_log_level, py_spy)
        else:
            cluster = JsCluster(args.nodes, workdir)
    except BenchError as exc:
        for k in keys:
            results[k] = {"error": str(exc)}
        return
    label = SYSTEM_LABEL[system]
    try:
        t0 = time.monotonic()
        try:
            cluster.start()
        except Exception as exc:
            console.print(f"[bold red]{label} {phase} cluster did not come up:[/] {exc}")
            for k in keys:
                results[k] = {"error": f"{label} cluster did not come up: {str(exc).splitlines()[0]}",
                              "detail": str(exc)}
            return
        info = cluster.describe()
        info["startup_s"] = round(time.monotonic() - t0, 2)
        if cluster.n > 1:
            leader, how = cluster.leader_index()
            info["leader_at_start"] = cluster.nodes[leader].name if leader is not None else None
            info["leader_found_by"] = how
        clusters[f"{system}-{phase}"] = info
        bench.runner.servers = [node.pid for node in cluster.nodes]
        console.print(f"[bold]{label}[/] {phase}: {cluster.n} node(s) up in {info['startup_s']}s "
                      f"({', '.join(cluster.urls)})"
                      + (f", leader {info.get('leader_at_start')}" if cluster.n > 1 else ""))
        for k in keys:
            broken = cluster.broken()
            if broken:
                results[k] = {"error": f"cluster broken before this workload: {broken.splitlines()[0]}",
                              "detail": broken}
                continue
            try:
                if k.startswith("sweep"):
                    r = bench.sweep(cluster, int(k[5:]))
                else:
                    r = getattr(bench, k)(cluster)
            except BenchError as exc:
                r = {"error": str(exc)}
            except Exception as exc:
                r = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            broken = cluster.broken()
            if broken and k != "w6":
                r.setdefault("error", f"a node died during this workload: {broken.splitlines()[0]}")
                r["detail"] = broken
            if "error" in r and system == "mq9" and "log_tails" not in r:
                r["log_tails"] = cluster.log_tails()
            results[k] = r
            console.print(f"  {label:>9} {k:<8} {summarize(k, r)}")
    finally:
        cluster.stop()


def summarize(key: str, r: dict) -> str:
    if "na" in r:
        return r["na"]
    if "error" in r:
        return f"[red]error: {r['error'].splitlines()[0][:200]}[/]"
    parts = []
    if "rate" in r:
        parts.append(f"{fmt_num(r['rate'])}/s")
    for k in ("p50_ms", "p99_ms"):
        if r.get(k) is not None:
            parts.append(f"{k[:3]} {r[k]:.2f} ms")
    if "recovery_s" in r:
        parts.append(f"recovered in {r['recovery_s']:.2f}s (killed {r.get('killed_node')})")
    if "peak_rss_mib" in r:
        parts.append(f"peak RSS {r['peak_rss_mib']} MiB, {r.get('disk_bytes_per_msg')} B/msg on disk")
    if "errors_after_kill" in r:
        parts.append(f"{r['errors_after_kill']} failed publishes meanwhile")
    elif not r.get("complete", False):
        parts.append(f"[yellow]incomplete ({r.get('errors', 0)} errors)[/]")
    if r.get("wall_s") and "client_cpu_s" in r:
        busiest = max(r.get("server_cpu_s") or [0.0])
        parts.append(f"[dim]cpu: client {r['client_cpu_s'] / r['wall_s']:.0%}, "
                     f"busiest server {busiest / r['wall_s']:.0%} of a core[/]")
    return ", ".join(parts)


# ---- output --------------------------------------------------------------------------------


def fmt_num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.1f} k"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def cell(r: dict | None, metric: str) -> tuple[str, float | None]:
    if r is None:
        return "[dim]-[/]", None
    if "na" in r:
        return f"[dim]{r['na']}[/]", None
    if "error" in r:
        return "[red]error[/]", None
    v = r.get(metric)
    if v is None:
        return "[dim]-[/]", None
    text = fmt_num(float(v))
    if not r.get("complete", False):
        text += " *"
    return text, float(v)


MERGED_METRICS = ("rate", "p50_ms", "p99_ms", "recovery_s", "peak_rss_mib", "disk_bytes_per_msg")


def merge_rounds(rounds: list[dict[str, dict]], systems: list[str]) -> dict[str, dict]:
    """One result per system and workload: the first round's, with each metric replaced by
    its median over the rounds that measured it (complete only if every round was)."""
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, dict] = {s: {} for s in systems}
    for s in systems:
        for key in rounds[0][s]:
            runs = [one[s][key] for one in rounds if key in one[s]]
            out = dict(runs[0])
            if "error" in out:
                merged[s][key] = out
                continue
            for metric in MERGED_METRICS:
                values = [r[metric] for r in runs if r.get(metric) is not None and "error" not in r]
                if values:
                    out[metric] = statistics.median(values)
            out["complete"] = all(r.get("complete", False) for r in runs)
            out["rounds"] = len(runs)
            merged[s][key] = out
    return merged


def round_ratios(rounds: list[dict[str, dict]], key: str, metric: str) -> list[float]:
    """mq9 / JetStream for one figure, per round that measured it on both."""
    out = []
    for one in rounds:
        js, mq9 = one.get("js", {}).get(key, {}), one.get("mq9", {}).get(key, {})
        if js.get(metric) and mq9.get(metric) is not None and "error" not in js and "error" not in mq9:
            out.append(mq9[metric] / js[metric])
    return out


def build_table(rows: list[Row], results: dict, systems: list[str], sizes: Sizes, nodes: int,
                rounds: list[dict[str, dict]] | None = None) -> tuple[Table, list]:
    both = len(systems) == 2
    table = Table(title=f"mq9 vs JetStream, {nodes} node(s) each (JetStream: R{nodes} file stream), "
                        "128 B payloads unless noted"
                        + (f"; medians of {len(rounds)} rounds" if rounds else ""))
    table.add_column("workload")
    table.add_column("client")
    table.add_column("unit")
    for s in systems:
        table.add_column(SYSTEM_LABEL[s], justify="right")
    table.add_column("mq9/JetStream" if both else "", justify="right")
    data = []
    ran = {k for s in systems for k in results.get(s, {})}
    for row in rows:
        if row.key not in ran:
            continue
        title = row.title.format(w4=f"{sizes.w4[0] // 1000}k", w7=f"{sizes.w7[0] / 1e6:g}M"
                                 if sizes.w7[0] >= 1e6 else f"{sizes.w7[0] // 1000}k")
        vals, texts = {}, []
        for s in systems:
            text, v = cell(results.get(s, {}).get(row.key), row.metric)
            texts.append(text)
            vals[s] = v
        ratio = None
        spread = round_ratios(rounds, row.key, row.metric) if rounds and both else []
        if spread:
            ratio = statistics.median(spread)
        elif vals.get("js") and vals.get("mq9") is not None:
            ratio = vals["mq9"] / vals["js"]
        if not both:
            ratio_text = f"[dim]{row.better} is better[/]"
        elif ratio is not None:
            span = escape(f" [{min(spread):.2g}-{max(spread):.2g}]") if len(spread) > 1 else ""
            ratio_text = f"{ratio:.3g}{span} ({row.better} is better)"
        else:
            ratio_text = f"[dim]- ({row.better} is better)[/]"
        table.add_row(title, row.client, row.unit, *texts, ratio_text)
        data.append({"key": row.key, "workload": title, "client": row.client, "metric": row.metric,
                     "unit": row.unit, "better": row.better, **{SYSTEM_LABEL[s]: vals[s] for s in systems},
                     "ratio_mq9_over_js": round(ratio, 4) if ratio is not None else None,
                     "ratios_per_round": [round(x, 4) for x in spread] if spread else None})
    return table, data


def plot_sweep(results: dict, systems: list[str], path: Path) -> str:
    """Throughput and p99 vs window, one line per system. Returns a note for the output."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib to get window_sweep.png)"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for s in systems:
        pts = [(w, results.get(s, {}).get(f"sweep{w}", {})) for w in SWEEP_WINDOWS]
        pts = [(w, r) for w, r in pts if "rate" in r and "error" not in r]
        if not pts:
            continue
        ax1.plot([w for w, _ in pts], [r["rate"] for _, r in pts], marker="o", label=SYSTEM_LABEL[s])
        ax2.plot([w for w, _ in pts], [r.get("p99_ms") or 0 for _, r in pts], marker="o", label=SYSTEM_LABEL[s])
    for ax, ylabel in ((ax1, "acknowledged msgs/s"), (ax2, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(SWEEP_WINDOWS), [str(w) for w in SWEEP_WINDOWS])
        ax.set_xlabel("publishes in flight (nats-py)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax1.set_title("throughput vs window")
    ax2.set_title("p99 latency vs window")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot: {path}"


def machine_info() -> dict:
    info = core.machine_info()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    try:
        info["git_commit_full"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                                                 text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True,
                               timeout=10).stdout
        info["git_dirty"] = bool(dirty.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        info["libnats"] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libnats-dev"], capture_output=True,
                                         text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


# ---- main ----------------------------------------------------------------------------------


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


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    systems = [args.only] if args.only else ["js", "mq9"]
    t0 = time.monotonic()
    core.ensure_packages(need_server="js" in systems)
    core.build_natsbench()
    if args.profile and "mq9" in systems:
        core.py_spy_path(install=True)
    info = machine_info()
    sizes = QUICK if args.quick else FULL
    console.print(f"[bold]mq9 vs JetStream[/]  {info['cpu_model']}, {info['cores']} cores, {info.get('ram_gib')} GiB, "
                  f"kernel {info['kernel']}, load {info['load_avg_at_start'][0]:.2f}, Python {info['python']}, "
                  f"{info['nats_server']}, commit {info['git_commit']}{' (dirty)' if info.get('git_dirty') else ''}")
    console.print(f"[dim]{'quick' if args.quick else 'full'} run, {args.nodes} node(s), workloads "
                  f"{','.join(map(str, args.workloads))}{', window sweep' if args.window_sweep else ''}"
                  f"{', mq9 under py-spy' if args.profile else ''}[/]")

    rounds: list[dict[str, dict]] = []
    clusters: dict[str, dict] = {}
    workdir = Path(tempfile.mkdtemp(prefix="mq9-bench-"))
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    try:
        with progress:
            bench = Bench(args, Runner(progress, workdir), workdir)
            for number in range(max(1, args.rounds)):
                if args.rounds > 1:
                    console.print(f"[bold]round {number + 1} of {args.rounds}[/]")
                results: dict[str, dict] = {s: {} for s in systems}
                for system in (systems if number % 2 == 0 else systems[::-1]):  # take turns going first
                    for phase, keys in PHASES:
                        keys = phase_keys(args, keys)
                        if keys == ["w6"] and args.nodes < 3:
                            results[system]["w6"] = {"na": "n/a (1 node)"}
                            continue
                        run_phase(bench, system, phase, keys, results[system],
                                  clusters if number == 0 else {})
                rounds.append(results)
    finally:
        if args.keep:
            console.print(f"[dim]kept {workdir}[/]")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0

    results = merge_rounds(rounds, systems)
    table, rows = build_table(table_rows(args.window_sweep), results, systems, sizes, args.nodes,
                              rounds if len(rounds) > 1 else None)
    console.print(table)
    notes = [
        "* = stopped at its time cap, or saw errors / lost messages: the figure covers what was done",
        "ratio = mq9 / JetStream: above 1 is better for mq9 on 'higher is better' rows, worse on 'lower' rows",
        "nats-server's file store syncs to disk every 2 minutes by default (sync_interval); mq9 commits "
        "through its Raft journal: durability policies differ",
        "mq9 nodes log at --mq9-log-level (default info: lifecycle lines only) so the leader can be read from "
        "the logs",
    ]
    if len(rounds) > 1:
        notes.append(f"{len(rounds)} rounds, the systems taking turns to go first: figures are medians, the ratio "
                     "is the median of the per-round ratios, [low-high] their range")
    if args.no_c:
        notes.append("nats.c variants skipped (--no-c)")
    if args.profile:
        notes.append("mq9 nodes of the main phase ran under py-spy (figures include its overhead): "
                     + ", ".join(f"out/mq9_node{i + 1}.svg" for i in range(args.nodes)))
    if args.window_sweep:
        notes.append(plot_sweep(results, systems, SWEEP_PNG))
    for n in notes:
        console.print(f"[dim]{escape(n)}[/]")
    errs = [(s, k, r) for one in rounds for s in systems for k, r in one[s].items() if "error" in r]
    if errs:
        console.print("[bold red]errors[/]")
        for s, k, r in errs:
            console.print(f"  [red]{SYSTEM_LABEL[s]} {k}:[/] {r['error'][:600]}")
        shown = set()
        for s, k, r in errs:
            tails = r.get("log_tails") or r.get("detail")
            if tails and tails not in shown and s == "mq9":
                shown.add(tails)
                console.print(f"[dim]mq9 node logs after {k}:[/]\n{tails}")
    console.print(f"[dim]took {elapsed:.0f}s[/]")

    c_clients = [r.get("client", "") for s in systems for r in results[s].values()
                 if str(r.get("client", "")).startswith("nats.c")]
    info["nats_c"] = c_clients[0].split()[-1] if c_clients else "unknown"
    OUT.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": info,
        "config": {"nodes": args.nodes, "quick": args.quick, "only": args.only, "workloads": args.workloads,
                   "no_c": args.no_c, "profile": args.profile, "rounds": args.rounds, "window_sweep": args.window_sweep,
                   "mq9_log_level": args.mq9_log_level, "sizes": sizes.__dict__},
        "clusters": clusters,
        "table": rows,
        "results": {SYSTEM_LABEL[s]: results[s] for s in systems},  # medians when rounds > 1
        "rounds": [{SYSTEM_LABEL[s]: one[s] for s in systems} for one in rounds] if len(rounds) > 1 else None,
        "window_sweep": {SYSTEM_LABEL[s]: [{"window": w, **{k: results[s].get(f"sweep{w}", {}).get(k)
                                                           for k in ("rate", "p50_ms", "p99_ms", "error")}}
                                          for w in SWEEP_WINDOWS] for s in systems} if args.window_sweep else None,
        "notes": notes,
        "elapsed_s": round(elapsed, 1),
    }
    JSON_OUT.write_text(json.dumps(report, indent=2, default=str) + "\n")
    console.print(f"[dim]wrote {JSON_OUT.relative_to(REPO)}[/]")
    return 1 if errs else 0


if __name__ == "__main__":
    core.run_main(main)
