"""nats-server processes: where the binary is, command lines, JetStream configs.

The benchmarks run nats-server beside mq9 as the reference. A core NATS server or
cluster is configured by flags (`server_command`); a JetStream server by a config file
(`jetstream_config`), since JetStream's store and limits have no flags of their own.
A cluster of n servers lists, on each, the other n - 1 servers' cluster ports as routes
under one cluster name; the servers then find each other in any start order.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

CLUSTER_NAME = "bench"


def nats_server_path() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None)


def _others(ports: Sequence[int], i: int, scheme: str) -> list[str]:
    return [f"{scheme}://127.0.0.1:{p}" for j, p in enumerate(ports) if j != i]


def server_command(exe: str, port: int) -> list[str]:
    """One core NATS server on loopback."""
    return [exe, "-a", "127.0.0.1", "-p", str(port)]


def cluster_commands(exe: str, ports: Sequence[int], cluster_ports: Sequence[int]) -> list[list[str]]:
    """A core NATS cluster: server i listens on ports[i], routes on cluster_ports[i]."""
    return [server_command(exe, port) + ["-n", f"n{i + 1}", "-cluster", f"nats://127.0.0.1:{cluster_ports[i]}",
                                         "-routes", ",".join(_others(cluster_ports, i, "nats")),
                                         "-cluster_name", CLUSTER_NAME]
            for i, port in enumerate(ports)]


def jetstream_config(i: int, ports: Sequence[int], cluster_ports: Sequence[int], store: Path) -> str:
    """The config of JetStream server i (named js{i+1}) of len(ports); a cluster block when more than one."""
    lines = [f'server_name: "js{i + 1}"', f"listen: 127.0.0.1:{ports[i]}",
             "jetstream {", f'  store_dir: "{store}"', "  max_memory_store: 1GB", "  max_file_store: 32GB", "}"]
    if len(ports) > 1:
        lines += ["cluster {", f'  name: "{CLUSTER_NAME}"', f"  listen: 127.0.0.1:{cluster_ports[i]}",
                  f"  routes: [{', '.join(_others(cluster_ports, i, 'nats-route'))}]", "}"]
    return "\n".join(lines) + "\n"
