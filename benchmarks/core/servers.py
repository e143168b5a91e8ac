"""The servers core_nats.py measures: one nats-server and one mq9 node, or two 3-node clusters.

Single servers (the default): nats-server on one port; an mq9 node (a one-node Raft
cluster) with its Raft and routes listeners in the benchmarks' port range too, under
py-spy with --profile. Clusters (--cluster): nats-server with routes between its three
servers, and three mq9 nodes peered by Raft whose routes listen on their Raft port -
1000 (where peers dial them). A cluster counts as up once a probe published on every
node reaches a subscriber on every other node (`wait_routes`); an mq9 cluster then
waits (a while) for a settled leader, and its Raft view is read at the start and the end
of the run, so an election under load shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nats

from benchmarks.common import OUT, REPO
from benchmarks.common.cli import BenchError
from benchmarks.common.install import py_spy_path, require_nats_server
from benchmarks.common.servers import SERVER_OPTIONS, free_port, stop_all
from benchmarks.core.workloads import CLUSTER_NODES
from harness import mq9_nodes
from harness.mq9_nodes import ROUTES_BELOW_RAFT, Mq9Node
from harness.nats_server import cluster_commands, server_command
from harness.process import Process, die_with_parent

OPTIONS = {**SERVER_OPTIONS, "tail_lines": 25}
WARNING_TAGS = ("[WRN]", "[ERR]", "[FTL]", "Traceback", "ERROR", "WARNING")


def make_servers(which: list[str], workdir: Path, profile: bool) -> list[Process]:
    servers: list[Process] = []
    if "nats" in which:
        port = free_port()
        exe = require_nats_server()
        servers.append(Process("nats-server", server_command(exe, port), workdir / "nats-server.log", port=port,
                               **OPTIONS))
    if "mq9" in which:
        # keep the Raft port and the route listener (default: client port + 1000) in range too
        port, raft_port, route_port = free_port(), free_port(), free_port()
        wrapper = None
        if profile:
            OUT.mkdir(parents=True, exist_ok=True)
            wrapper = [py_spy_path(install=True), "record", "-o", str(OUT / "core_profile.svg"), "--"]
        servers.append(Mq9Node("mq9", port, workdir / "mq9-data", workdir / "mq9.log", node_name="bench",
                               raft_port=raft_port, routes_port=route_port, log_level="warning", wrapper=wrapper,
                               **OPTIONS))
    return servers


class ClusterProc:
    """Three server processes forming one cluster; clients see node 1 (url) and node 2 (sub_url)."""

    profiled = False

    def __init__(self, name: str, nodes: list[Process], extra: dict | None = None) -> None:
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
            node.start(timeout=timeout)
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
            found += [f"{node.name}: {ln}" for ln in text.splitlines() if any(tag in ln for tag in WARNING_TAGS)]
        return found[-limit:]

    def raft_status(self) -> dict:
        """mq9 only: leader and each node's role and term, from `mq9 cluster status --json`."""
        cmd = [sys.executable, "-m", "node.cli", "cluster", "status", "--json", "--timeout", "3",
               "--server", ",".join(n.url for n in self.nodes)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO,
                                  env=dict(os.environ, PYTHONPATH=str(REPO)), preexec_fn=die_with_parent)
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
        return {"nodes": [{"name": n.name, "url": n.url, "cmd": n.command()} for n in self.nodes],
                "publisher_url": self.url, "subscriber_url": self.sub_url,
                "start_to_routes_up_s": self.routes_up_s, "route_probe_rounds": self.probe_rounds,
                **({"raft": self.raft} if self.raft else {}), **self.extra}


def wait_routes(cluster: ClusterProc, timeout: float) -> int:
    """Until a publish on every node reaches a subscriber on every other node; returns rounds."""
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
        exe = require_nats_server()
        ports = [free_port() for _ in range(n)]
        cports = [free_port() for _ in range(n)]
        nodes = [Process(f"nats-server n{i + 1}", cmd, workdir / f"nats-n{i + 1}.log", port=ports[i], **OPTIONS)
                 for i, cmd in enumerate(cluster_commands(exe, ports, cports))]
        clusters.append(ClusterProc("nats-server cluster", nodes, {"cluster_ports": cports}))
    if "mq9" in which:
        ports = [free_port() for _ in range(n)]
        # peers dial our routes on our Raft port - 1000 (node/config.py): reserve it with the Raft port
        offset = -ROUTES_BELOW_RAFT
        raft = [free_port(also=(offset,)) for _ in range(n)]
        nodes = mq9_nodes.cluster_of([
            Mq9Node(f"mq9 n{i + 1}", ports[i], workdir / f"mq9-n{i + 1}", workdir / f"mq9-n{i + 1}.log",
                    node_name=f"n{i + 1}", raft_port=raft[i], routes_port=raft[i] + offset, log_level="warning",
                    **OPTIONS)
            for i in range(n)])
        clusters.append(ClusterProc("mq9 cluster", nodes, {"raft_ports": raft,
                                                           "route_ports": [r + offset for r in raft]}))
    return clusters
