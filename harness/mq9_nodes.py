"""mq9 nodes as processes: their command lines, and peering them into a cluster.

A node is `python -m node.cli serve`, run from the repository (PYTHONPATH is the repo
root, so it runs the working tree's code, installed or not). `serve_command` builds
the flags every user passes: name, client listener, data directory and, where given,
the Raft address, peers, the routes listener and the log level; `extra` goes last, so
a caller can add or override anything. A node without `raft_port` takes the node's
default Raft port, client port + 2000 (its routes listen on client port + 1000).

`cluster_of(nodes)` makes each node a Raft peer of every other (`--peer` each one's
Raft address): the nodes are built first, with their ports, then peered, then started.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from harness.process import Process

REPO = Path(__file__).resolve().parent.parent
RAFT_PORT_OFFSET = 2000    # a node's default Raft port: its client port + 2000
ROUTES_BELOW_RAFT = 1000   # a node dials a peer's routes on the peer's Raft port - 1000


def serve_command(name: str, port: int, data: Path, *, raft_port: int | None = None, peers: Sequence[str] = (),
                  routes_port: int | None = None, log_level: str | None = None,
                  extra: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "node.cli", "serve", "--name", name, "--listen", f"127.0.0.1:{port}",
           "--data", str(data)]
    if raft_port is not None:
        cmd += ["--raft", f"127.0.0.1:{raft_port}"]
    cmd += [a for peer in peers for a in ("--peer", peer)]
    if routes_port is not None:
        cmd += ["--routes", f"127.0.0.1:{routes_port}"]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    return cmd + list(extra)


class Mq9Node(Process):
    """One `mq9 serve` process. `name` names the process in messages; `node_name` is its
    --name (default: the same)."""

    def __init__(self, name: str, port: int, data: Path, log_path: Path, *, node_name: str | None = None,
                 raft_port: int | None = None, peers: Sequence[str] = (), routes_port: int | None = None,
                 log_level: str | None = None, extra: Sequence[str] | None = None, **options: Any) -> None:
        super().__init__(name, None, log_path, port=port, **options)  # env, cwd, wrapper, ...
        self.node_name = node_name or name
        self.data = data
        self.raft_port = raft_port
        self.peers = list(peers)
        self.routes_port = routes_port
        self.log_level = log_level
        self.extra = list(extra or [])

    @property
    def raft_address(self) -> str:
        return f"127.0.0.1:{self.raft_port or self.port + RAFT_PORT_OFFSET}"

    def base_command(self) -> list[str]:
        return serve_command(self.node_name, self.port, self.data, raft_port=self.raft_port, peers=self.peers,
                             routes_port=self.routes_port, log_level=self.log_level, extra=self.extra)

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHONPATH": str(REPO)}


def cluster_of(nodes: list[Mq9Node]) -> list[Mq9Node]:
    """Make every node a Raft peer of every other; returns the nodes (not started)."""
    for node in nodes:
        node.peers += [other.raft_address for other in nodes if other is not node]
    return nodes
