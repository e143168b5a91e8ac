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
import ctypes
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = BENCH / "bin"
OUT = BENCH / "out"
NATSBENCH_SRC = BENCH / "natsbench.c"
NATSBENCH = BIN / "natsbench"
NATSPY = BENCH / "natspy_bench.py"
PORT_RANGE = (19000, 19999)  # out of the way of tests that take random ports
REPEATS = 3

# wide enough for the table and progress lines when output goes to a file or pipe
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


class BenchError(RuntimeError):
    """A failure with a message meant for the person running the benchmark."""


# ---- workloads ---------------------------------------------------------------------------


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
MQ9_ROUTE_BELOW_RAFT = 1000  # an mq9 node dials a peer's routes on the peer's Raft port - 1000


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
                              preexec_fn=_die_with_parent)
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


# ---- setup: packages, build --------------------------------------------------------------


def nats_server_path() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)


def ensure_packages(need_server: bool) -> None:
    """apt-get install the packages this benchmark needs and does not find."""
    missing = []
    if need_server and not nats_server_path():
        missing.append("nats-server")
    if not Path("/usr/include/nats/nats.h").exists():
        missing.append("libnats-dev")
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise BenchError(f"missing {', '.join(missing)} and there is no apt-get: install them by hand")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        raise BenchError(f"missing {', '.join(missing)}: run as root or install them with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = prefix + ["apt-get", "install", "-y", *missing]
    console.print(f"[bold]installing[/] {' '.join(missing)} with apt-get")
    try:
        if subprocess.run(install, env=env, timeout=600).returncode != 0:
            # the package lists may be stale or absent (fresh containers): refresh once
            subprocess.run(prefix + ["apt-get", "update"], env=env, timeout=600, check=True)
            subprocess.run(install, env=env, timeout=600, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"apt-get could not install {', '.join(missing)}: {exc}") from exc


def build_natsbench() -> None:
    """gcc natsbench.c into benchmarks/bin/ when the binary is missing or older than the source."""
    if NATSBENCH.exists() and NATSBENCH.stat().st_mtime >= NATSBENCH_SRC.stat().st_mtime:
        return
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise BenchError("no C compiler: install gcc (apt-get install -y gcc)")
    BIN.mkdir(parents=True, exist_ok=True)
    cmd = [gcc, "-O2", "-Wall", "-o", str(NATSBENCH), str(NATSBENCH_SRC), "-lnats", "-lpthread"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BenchError(f"building natsbench failed:\n{' '.join(cmd)}\n{proc.stderr.strip()}")


# ---- servers -----------------------------------------------------------------------------

_taken: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(also: tuple[int, ...] = ()) -> int:
    """A port in PORT_RANGE that nobody listens on and this run has not handed out.

    also: offsets whose ports must be free (and not handed out) too; they are taken with it."""
    candidates = [p for p in range(PORT_RANGE[0], PORT_RANGE[1] + 1)
                  if p not in _taken and all(p + off not in _taken for off in also)]
    random.shuffle(candidates)
    for port in candidates[:500]:
        if _bindable(port) and all(_bindable(port + off) for off in also):
            _taken.add(port)
            _taken.update(port + off for off in also)
            return port
    raise BenchError(f"no free port in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the harness dies, so no server outlives a crashed run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class ServerProc:
    name: str                  # "nats-server" or "mq9"
    cmd: list[str]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    profiled: bool = False     # cmd is `py-spy record ... -- <node>`
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"---- {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=REPO, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} before accepting clients:\n"
                                 f"{self.log_tail()}")
            if port_open(self.port):
                return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not accept clients on {self.port} within {timeout:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self) -> str:
        return f"{self.name} exited with {self.proc.returncode if self.proc else None}"

    def stop(self) -> None:
        """SIGTERM (to the node itself when py-spy wraps it, so py-spy writes its SVG), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        target = self.proc.pid
        if self.profiled:
            target = next(iter(_children(self.proc.pid)), self.proc.pid)
        try:
            os.kill(target, signal.SIGTERM)
            self.proc.wait(60 if self.profiled else 10)  # py-spy needs a while to write the SVG
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        if self.proc.poll() is None:
            for pid in _children(self.proc.pid):
                _kill(pid)
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_all(nodes) -> None:
    """Stop every node; one that fails to stop never keeps the others running."""
    for node in nodes:
        try:
            node.stop()
        except Exception as exc:
            console.print(f"[red]stopping {node.name}: {exc}[/]")
            if node.proc is not None and node.proc.poll() is None:
                node.proc.kill()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def py_spy_path(install: bool) -> str:
    """py-spy next to the running interpreter or on PATH; pip-installed into this venv if absent."""
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found or not install:
        if not found:
            raise BenchError("py-spy is not installed")
        return found
    console.print("[bold]installing[/] py-spy into this venv for --profile")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], timeout=300)
    if proc.returncode != 0 or not local.exists():
        raise BenchError("pip could not install py-spy; install it or run without --profile")
    return str(local)


def make_servers(which: list[str], workdir: Path, profile: bool) -> list[ServerProc]:
    servers = []
    if "nats" in which:
        port = free_port()
        exe = nats_server_path()
        if not exe:
            raise BenchError("nats-server is not installed (apt-get install -y nats-server)")
        servers.append(ServerProc("nats-server", [exe, "-a", "127.0.0.1", "-p", str(port)], port,
                                  workdir / "nats-server.log"))
    if "mq9" in which:
        # keep the Raft port and the route listener (default: client port + 1000) in range too
        port, raft_port, route_port = free_port(), free_port(), free_port()
        node = [sys.executable, "-m", "node.cli", "serve", "--name", "bench", "--listen", f"127.0.0.1:{port}",
                "--data", str(workdir / "mq9-data"), "--raft", f"127.0.0.1:{raft_port}",
                "--routes", f"127.0.0.1:{route_port}", "--log-level", "warning"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        if profile:
            OUT.mkdir(parents=True, exist_ok=True)
            node = [py_spy_path(install=True), "record", "-o", str(OUT / "core_profile.svg"), "--"] + node
        servers.append(ServerProc("mq9", node, port, workdir / "mq9.log", env=env, profiled=profile))
    return servers


# ---- clusters (--cluster) ----------------------------------------------------------------


class ClusterProc:
    """Three server processes forming one cluster; clients see node 1 (url) and node 2 (sub_url)."""

    profiled = False

    def __init__(self, name: str, nodes: list[ServerProc], extra: dict | None = None) -> None:
        self.name = name
        self.nodes = nodes
        self.extra = extra or {}     # ports and such, for the report
        self.routes_up_s: float | None = None
        self.probe_rounds = 0
        self.raft: dict[str, dict] = {}  # mq9: `cluster status --json` digests, "start" and "end"
        self.log_marks: dict[str, int] = {}  # log sizes once the cluster was up

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def sub_url(self) -> str:
        return self.nodes[1].url

    def start(self, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        for node in self.nodes:
            node.start(timeout)
        left = max(5.0, timeout - (time.monotonic() - t0))
        self.probe_rounds = wait_routes(self, left)
        self.routes_up_s = round(time.monotonic() - t0, 2)
        if self.name.startswith("mq9"):
            # core NATS does not need Raft, but measure a settled cluster: wait (a while) for a leader
            until = time.monotonic() + 15
            while True:
                self.raft["start"] = self.raft_status()
                if self.raft["start"].get("settled") or time.monotonic() > until:
                    break
                time.sleep(0.5)
        for node in self.nodes:
            self.log_marks[node.name] = node.log_path.stat().st_size if node.log_path.exists() else 0

    def new_warnings(self, limit: int = 50) -> list[str]:
        """Log lines at warning level or above written since the cluster was up (start-up noise,
        such as a route dialed before its peer listens, is not included)."""
        found: list[str] = []
        for node in self.nodes:
            try:
                with open(node.log_path, "rb") as f:
                    f.seek(self.log_marks.get(node.name, 0))
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            found += [f"{node.name}: {ln}" for ln in text.splitlines()
                      if any(tag in ln for tag in ("[WRN]", "[ERR]", "[FTL]", "Traceback", "ERROR", "WARNING"))]
        return found[-limit:]

    def raft_status(self) -> dict:
        """mq9 only: leader and each node's role and term, from `mq9 cluster status --json`."""
        cmd = [sys.executable, "-m", "node.cli", "cluster", "status", "--json", "--timeout", "3",
               "--server", ",".join(n.url for n in self.nodes)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO,
                                  env=dict(os.environ, PYTHONPATH=str(REPO)), preexec_fn=_die_with_parent)
            full = json.loads(proc.stdout)
        except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as exc:
            return {"error": f"cluster status: {type(exc).__name__}: {exc}"}
        nodes = {n.get("name"): {"state": n.get("state"), "term": n.get("term"), "leader": n.get("leader_name"),
                                 "commit_index": n.get("commit_index")} for n in full.get("nodes", [])}
        leader = full.get("leader")
        settled = (bool(leader) and not full.get("unreachable") and len(nodes) == len(self.nodes)
                   and all(n["leader"] == leader for n in nodes.values())
                   and len({n["term"] for n in nodes.values()}) == 1)
        return {"leader": leader, "settled": settled, "unreachable": full.get("unreachable") or {}, "nodes": nodes}

    def raft_changed(self) -> bool:
        """The leader or a term differs between the "start" and "end" status (both readable)."""
        def key(st: dict) -> tuple:
            return st.get("leader"), sorted(str(n.get("term")) for n in st.get("nodes", {}).values())
        start, end = self.raft.get("start", {"error": ""}), self.raft.get("end", {"error": ""})
        return "error" not in start and "error" not in end and key(start) != key(end)

    def raft_line(self) -> str:
        def one(st: dict) -> str:
            if "error" in st:
                return st["error"]
            terms = sorted({str(n.get("term")) for n in st["nodes"].values()})
            return f"leader {st.get('leader') or 'none'}, term {'/'.join(map(str, terms))}" + (
                f", unreachable {sorted(st['unreachable'])}" if st["unreachable"] else "")
        return " -> ".join(f"{k}: {one(v)}" for k, v in self.raft.items())

    def alive(self) -> bool:
        return all(n.alive() for n in self.nodes)

    def exit_status(self) -> str:
        return "; ".join(n.exit_status() for n in self.nodes if not n.alive())

    def stop(self) -> None:
        stop_all(self.nodes)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(f"--- {n.name} ({n.log_path.name})\n{n.log_tail(lines)}" for n in self.nodes)

    def describe(self) -> dict:
        return {"nodes": [{"name": n.name, "url": n.url, "cmd": n.cmd} for n in self.nodes],
                "publisher_url": self.url, "subscriber_url": self.sub_url,
                "start_to_routes_up_s": self.routes_up_s, "route_probe_rounds": self.probe_rounds,
                **({"raft": self.raft} if self.raft else {}), **self.extra}


def wait_routes(cluster: ClusterProc, timeout: float) -> int:
    """Until a publish on every node reaches a subscriber on every other node; returns rounds."""
    import asyncio

    import nats

    async def probe() -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conns, got = [], [asyncio.Event() for _ in cluster.nodes]
        tag = os.urandom(4).hex()
        try:
            for i, node in enumerate(cluster.nodes):
                async def on_probe(msg, i=i) -> None:
                    got[i].set()
                nc = await nats.connect(node.url, name=f"route-probe-{i + 1}", connect_timeout=5,
                                        allow_reconnect=False, max_reconnect_attempts=1)
                conns.append(nc)
                await nc.subscribe(f"bench.route.probe.{tag}.{i}", cb=on_probe)
                await nc.flush(timeout=5)
            rounds = 0
            pending = [(i, j) for i in range(len(conns)) for j in range(len(conns)) if i != j]
            while pending:
                rounds += 1
                for i, j in list(pending):
                    got[j].clear()
                    await conns[i].publish(f"bench.route.probe.{tag}.{j}", b"probe")
                    await conns[i].flush(timeout=5)
                    try:
                        await asyncio.wait_for(got[j].wait(), timeout=0.2)
                        pending.remove((i, j))
                    except asyncio.TimeoutError:
                        pass
                if pending:
                    dead = [n.exit_status() for n in cluster.nodes if not n.alive()]
                    if dead:
                        raise BenchError(f"{cluster.name}: {'; '.join(dead)} while the routes came up:\n"
                                         f"{cluster.log_tail()}")
                    if loop.time() > deadline:
                        missing = ", ".join(f"n{i + 1}->n{j + 1}" for i, j in pending)
                        raise BenchError(f"{cluster.name}: routes not up within {timeout:.0f}s "
                                         f"(no probe {missing}); logs:\n{cluster.log_tail()}")
                    await asyncio.sleep(0.1)
            return rounds
        finally:
            for nc in conns:
                try:
                    await nc.close()
                except Exception:
                    pass

    try:
        return asyncio.run(probe())
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"{cluster.name}: route probe failed: {type(exc).__name__}: {exc}\n"
                         f"{cluster.log_tail()}") from exc


def make_clusters(which: list[str], workdir: Path) -> list[ClusterProc]:
    clusters = []
    n = CLUSTER_NODES
    if "nats" in which:
        exe = nats_server_path()
        if not exe:
            raise BenchError("nats-server is not installed (apt-get install -y nats-server)")
        ports = [free_port() for _ in range(n)]
        cports = [free_port() for _ in range(n)]
        nodes = []
        for i in range(n):
            routes = ",".join(f"nats://127.0.0.1:{cports[j]}" for j in range(n) if j != i)
            cmd = [exe, "-a", "127.0.0.1", "-p", str(ports[i]), "-n", f"n{i + 1}",
                   "-cluster", f"nats://127.0.0.1:{cports[i]}", "-routes", routes, "-cluster_name", "bench"]
            nodes.append(ServerProc(f"nats-server n{i + 1}", cmd, ports[i], workdir / f"nats-n{i + 1}.log"))
        clusters.append(ClusterProc("nats-server cluster", nodes, {"cluster_ports": cports}))
    if "mq9" in which:
        ports = [free_port() for _ in range(n)]
        # peers dial our routes on our Raft port - 1000 (node/config.py): reserve it with the Raft port
        offset = -MQ9_ROUTE_BELOW_RAFT
        raft = [free_port(also=(offset,)) for _ in range(n)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        nodes = []
        for i in range(n):
            peers = [a for j in range(n) if j != i for a in ("--peer", f"127.0.0.1:{raft[j]}")]
            cmd = [sys.executable, "-m", "node.cli", "serve", "--name", f"n{i + 1}",
                   "--listen", f"127.0.0.1:{ports[i]}", "--raft", f"127.0.0.1:{raft[i]}", *peers,
                   "--routes", f"127.0.0.1:{raft[i] + offset}", "--data", str(workdir / f"mq9-n{i + 1}"),
                   "--log-level", "warning"]
            nodes.append(ServerProc(f"mq9 n{i + 1}", cmd, ports[i], workdir / f"mq9-n{i + 1}.log", env=env))
        clusters.append(ClusterProc("mq9 cluster", nodes, {"raft_ports": raft,
                                                           "route_ports": [r + offset for r in raft]}))
    return clusters


# ---- facts about the machine -------------------------------------------------------------


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    exe = nats_server_path()
    try:
        nats_py = version("nats-py")
    except PackageNotFoundError:
        nats_py = "unknown"
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "load_avg_at_start": list(os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nats_server": out([exe, "--version"]) if exe else "not installed",
        "nats_py": nats_py,
        "git_commit": out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---- main --------------------------------------------------------------------------------


def fmt_rate(r: dict | None) -> str:
    if r is None:
        return "[red]error[/]"
    rate = r.get("rate", 0.0)
    text = f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.1f} k" if rate >= 1e4 else f"{rate:,.0f}"
    return text if r.get("complete") else text + " *"


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


def run_workloads(servers: list, workloads: list[Workload], args: argparse.Namespace,
                  deadline: float) -> tuple[list[dict], bool]:
    """Every workload against every server (interleaved, per repeat); entries for the report."""
    results: list[dict] = []
    failed = False
    dead: set[str] = set()
    for w in workloads:
        count = w.quick_count if args.quick else w.count
        runs: dict[str, list[dict]] = {s.name: [] for s in servers}
        for rep in range(args.repeats):
            for s in servers:  # interleaved: nats-server, then mq9, per repeat
                if not s.alive():
                    if s.name not in dead:
                        dead.add(s.name)
                        console.print(f"[bold red]{s.exit_status()}[/]; its log ends:\n{s.log_tail()}")
                    r = {"error": s.exit_status()}
                else:
                    r = run_client(w, s.url, count, deadline, getattr(s, "sub_url", None))
                runs[s.name].append(r)
        progress = " | ".join(f"{name} " + ", ".join("error" if "error" in r else fmt_rate(r) for r in rs)
                              for name, rs in runs.items())
        console.print(f"  [dim]{w.key:<12} {progress} ({w.unit})[/]")
        for name, rs in runs.items():
            for msg in dict.fromkeys(r["error"] for r in rs if "error" in r):
                console.print(f"    [red]{name}: {msg[:400]}[/]")
        entry = {"key": w.key, "title": w.title, "client": w.client, "unit": w.unit, "count": count,
                 "size": w.size, "subs": w.subs, "concurrency": w.concurrency, "servers": {}}
        for name, rs in runs.items():
            best = best_of(rs)
            failed |= best is None
            entry["servers"][name] = {"best": best, "runs": rs}
        b_n = next((v["best"] for k, v in entry["servers"].items() if k.startswith("nats-server")), None)
        b_m = next((v["best"] for k, v in entry["servers"].items() if k.startswith("mq9")), None)
        entry["ratio"] = round(b_m["rate"] / b_n["rate"], 4) if b_n and b_m and b_n.get("rate") else None
        if w.target is not None:
            entry["target"] = w.target
            entry["meets_target"] = entry["ratio"] >= w.target if entry["ratio"] is not None else None
        results.append(entry)
    return results, failed


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    which = [args.only] if args.only else ["nats", "mq9"]
    known = CLUSTER_WORKLOADS if args.cluster else WORKLOADS
    workloads = known
    if args.workloads:
        keys = {k.strip() for k in args.workloads.split(",") if k.strip()}
        unknown = keys - {w.key for w in known}
        if unknown:
            raise BenchError(f"unknown workloads {sorted(unknown)}; known: {[w.key for w in known]}")
        workloads = [w for w in known if w.key in keys]
    if args.cluster:
        deadline = 10.0 if args.quick else 20.0  # per client run; a slower run reports what it got
    else:
        deadline = 15.0 if args.quick else 30.0

    t0 = time.monotonic()
    ensure_packages(need_server="nats" in which)
    build_natsbench()
    info = machine_info()
    console.print(f"[bold]core NATS benchmark{' across cluster nodes' if args.cluster else ''}[/]  "
                  f"{info['cpu_model']}, {info['cores']} cores, "
                  f"load {info['load_avg_at_start'][0]:.2f}, Python {info['python']}, {info['nats_server']}")

    with tempfile.TemporaryDirectory(prefix="mq9-bench-") as tmp:
        servers = make_clusters(which, Path(tmp)) if args.cluster else make_servers(which, Path(tmp), args.profile)
        try:
            for s in servers:
                s.start()
                if args.cluster:
                    console.print(f"  {s.name}: {', '.join(n.url for n in s.nodes)}  (routes up "
                                  f"{s.routes_up_s:.1f}s after start; publisher on n1, subscriber on n2)")
                else:
                    console.print(f"  {s.name} on {s.url}" + ("  (under py-spy)" if s.profiled else ""))
            results, failed = run_workloads(servers, workloads, args, deadline)
            tails, warnings = {}, {}
            if args.cluster:
                for s in servers:
                    tails[s.name] = s.log_tail()
                    warnings[s.name] = s.new_warnings()
                    if warnings[s.name]:
                        console.print(f"  [yellow]{s.name}: {len(warnings[s.name])} warning/error log lines during "
                                      f"the workloads[/], the last:\n    " + "\n    ".join(warnings[s.name][-5:]))
                    if s.raft and s.alive():
                        s.raft["end"] = s.raft_status()
                        console.print(f"  [dim]{s.name} Raft {s.raft_line()}[/]")
                        if s.raft_changed():
                            console.print(f"  [yellow]{s.name}: the Raft leader or term changed during the run "
                                          "(an election under load)[/]")
        finally:
            for s in servers:
                s.stop()
    elapsed = time.monotonic() - t0

    if args.cluster:
        title = (f"core NATS across nodes of 3-node clusters (publisher/requester on node 1, subscriber/responder "
                 f"on node 2), 128 B payloads, best of {args.repeats}, higher is better; "
                 f"targets mq9/nats: publish >= {PUB_TARGET}x, request/reply >= {REQREP_TARGET}x")
    else:
        title = f"core NATS, 128 B payloads, best of {args.repeats}, higher is better"
    table = Table(title=title)
    table.add_column("workload")
    table.add_column("client")
    table.add_column("unit")
    for name in (s.name for s in servers):
        table.add_column(name, justify="right")
    if len(servers) == 2:
        table.add_column("mq9/nats", justify="right")
    for e in results:
        row = [e["title"], e["client"], e["unit"]]
        row += [fmt_rate(e["servers"][s.name]["best"]) for s in servers]
        if len(servers) == 2:
            ratio = f"{e['ratio']:.2f}" if e["ratio"] is not None else "-"
            if e.get("meets_target") is not None:
                ratio = f"[green]{ratio}[/]" if e["meets_target"] else f"[red]{e['ratio']:.3f}[/] (< {e['target']})"
            row.append(ratio)
        table.add_row(*row)
    console.print(table)
    partial = any(v["best"] and not v["best"].get("complete") for e in results for v in e["servers"].values())
    if partial:
        why = ("within its {:.0f}s deadline, without losing messages between nodes (\"stalled\" in the JSON) "
               "and without a failed request" if args.cluster else
               "within its {:.0f}s deadline (or a request failed)").format(deadline)
        console.print(f"[yellow]* = no run completed {why}; the figure covers what was delivered[/]")
    console.print(f"[dim]took {elapsed:.0f}s[/]")
    if args.profile:
        console.print("[yellow]mq9 ran under py-spy: its figures include the profiler's overhead[/]; "
                      f"flame graph: {OUT / 'core_profile.svg'}")

    c_clients = [v["best"]["client"] for e in results for v in e["servers"].values()
                 if v["best"] and str(v["best"].get("client", "")).startswith("nats.c")]
    info["nats_c"] = c_clients[0].split()[-1] if c_clients else "unknown"
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"machine": info, "quick": args.quick, "repeats": args.repeats, "profile": args.profile,
              "deadline_s": deadline, "elapsed_s": round(elapsed, 1), "workloads": results}
    out_file = OUT / ("core_nats_cluster.json" if args.cluster else "core_nats.json")
    if args.cluster:
        report["cluster"] = {s.name: s.describe() for s in servers}
        report["targets"] = {"pub": PUB_TARGET, "reqrep": REQREP_TARGET}
        report["log_tails_at_end"] = tails
        report["log_warnings_during_workloads"] = warnings
    out_file.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"[dim]wrote {out_file.relative_to(REPO)}[/]")
    return 1 if failed else 0


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # unwind through the `finally` blocks that stop the servers


def run_main(main_fn) -> None:
    """Run a benchmark's main: SIGTERM/SIGHUP unwind cleanly; errors become exit codes."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        sys.exit(main_fn(sys.argv[1:]))
    except BenchError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    run_main(main)
