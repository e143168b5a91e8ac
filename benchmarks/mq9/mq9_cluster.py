"""mq9_bench.py's mq9 cluster: n nodes peered by Raft, mailboxes, and who leads.

Ready means every node commits a write through Raft (creating the mailbox
`bench.ready` through each node succeeds: a leader exists and the node reaches it), not
merely that ports are open. Mailboxes are created through node 1, retrying a 503 (no
leader at that moment) for up to 20 s. Followers apply asynchronously, so a workload
that reads from another node first polls that node's MAILBOX.INFO for the expected total.

Who leads, for the failover workload, is asked three ways in turn: `mq9 cluster status
--json` (any "leader" value naming one of our nodes), else each live node's last
"Raft state X -> Y" log line (needs log level info), else PySyncObj's syncobj_admin on
the Raft ports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import OUT, REPO
from benchmarks.common.cli import BenchError
from benchmarks.common.servers import free_port
from benchmarks.mq9 import console
from benchmarks.mq9.cluster import NODE_OPTIONS, Cluster, arun, connected
from harness import mq9_nodes
from harness.mq9_nodes import Mq9Node
from harness.process import wait_ready_all


class Mq9Cluster(Cluster):
    system = "mq9"

    def __init__(self, n: int, workdir: Path, log_level: str, py_spy: str | None = None) -> None:
        super().__init__(n, workdir)
        self.log_level = log_level
        self.py_spy = py_spy
        self.raft_ports = [free_port() for _ in range(n)]
        self.ports = [free_port() for _ in range(n)]
        self.data_dirs = [workdir / f"n{i + 1}" for i in range(n)]
        self.nodes = mq9_nodes.cluster_of([
            Mq9Node(f"mq9 n{i + 1}", self.ports[i], self.data_dirs[i], workdir / f"n{i + 1}.log", node_name=f"n{i + 1}",
                    raft_port=self.raft_ports[i], log_level=log_level, **NODE_OPTIONS)
            for i in range(n)])
        self._cli_status: bool | None = None

    def start(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.start(wait=False)
        if self.py_spy:
            OUT.mkdir(parents=True, exist_ok=True)
            for i, node in enumerate(self.nodes):
                node.attach_profiler(self.py_spy, OUT / f"mq9_node{i + 1}.svg")
        wait_ready_all(self.nodes, max(1.0, deadline - time.monotonic()), interval=0.05)
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
        async with connected(url) as nc:
            msg = await nc.request("$mq9.AI.MAILBOX.CREATE", json.dumps({"ttl": 0, "name": name, **extra}).encode(),
                                   timeout=5)
            return json.loads(msg.data)

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
            async with connected(self.urls[node]) as nc:
                msg = await nc.request(f"$mq9.AI.MAILBOX.INFO.{name}", b"", timeout=timeout)
                return json.loads(msg.data).get("total")
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
