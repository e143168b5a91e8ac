"""Nodes in their own network namespaces, so a test can cut a node off for real.

`NetnsLab` makes a bridge in the root namespace (10.99.N.1/24) and, per node, a
namespace with a veth pair on that bridge (10.99.N.10+i). Every node listens on its
own address with the standard ports (4222 clients, 6222 Raft), and the test reaches
clients through the bridge. `partition(node)` drops the node's Raft traffic with
iptables inside its namespace (clients still reach it); `heal(node)` flushes the rules.
Everything is torn down in `close()`, also after a failure. Needs root, iproute2 and
iptables; `available()` says whether this machine has them.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

from tests.nodes import NodeProcess


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class NetnsNode(NodeProcess):
    def __init__(self, workdir: Path, name: str, netns: str, ip: str, peers: list[str], env=None) -> None:
        super().__init__(workdir, name, port=4222, env=env)
        self.netns = netns
        self.ip = ip
        self.extra = ["--listen", f"{ip}:4222", "--raft", f"{ip}:6222"] + [a for p in peers for a in ("--peer", p)]

    @property
    def url(self) -> str:
        return f"nats://{self.ip}:4222"

    @property
    def raft_address(self) -> str:
        return f"{self.ip}:6222"

    def command(self) -> list[str]:
        base = super().command()
        i = base.index("--listen")
        del base[i:i + 2]  # our own --listen (in extra) replaces the loopback one
        return ["ip", "netns", "exec", self.netns] + base

    def wait_ready(self, timeout: float = 20.0) -> None:
        import socket

        from tests.nodes import wait_until

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited:\n{self.log_tail()}")
            try:
                with socket.create_connection((self.ip, 4222), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(ready, timeout, f"node {self.name} to accept clients")


class NetnsLab:
    def __init__(self, workdir: Path, n: int = 3, env=None) -> None:
        self.tag = f"{random.randrange(16 ** 4):04x}"
        self.subnet = random.randrange(100, 250)
        self.bridge = f"mq9br{self.tag}"
        self.namespaces: list[str] = []
        self.veths: list[str] = []
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"10.99.{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        # dockerd sets the FORWARD policy to DROP and makes bridged traffic pass iptables:
        # let traffic between our namespaces through whatever else runs on the machine
        self._forward_rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        _run("iptables", "-I", *self._forward_rule)
        ips = [f"10.99.{self.subnet}.{10 + i}" for i in range(n)]
        self.nodes: list[NetnsNode] = []
        for i in range(n):
            ns = f"mq9{self.tag}n{i + 1}"
            host_end, ns_end = f"mq9{self.tag}h{i + 1}", f"mq9{self.tag}c{i + 1}"
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            self.veths.append(host_end)
            _run("ip", "link", "set", host_end, "master", self.bridge)
            _run("ip", "link", "set", host_end, "up")
            _run("ip", "link", "set", ns_end, "netns", ns)
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ips[i]}/24", "dev", ns_end)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", ns_end, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        for i in range(n):
            peers = [f"{ip}:6222" for j, ip in enumerate(ips) if j != i]
            self.nodes.append(NetnsNode(workdir, f"n{i + 1}", self.namespaces[i], ips[i], peers, env=env))

    def partition(self, node: NetnsNode) -> None:
        for chain in ("INPUT", "OUTPUT"):
            for direction in ("--dport", "--sport"):
                _run("ip", "netns", "exec", node.netns, "iptables", "-A", chain, "-p", "tcp", direction, "6222", "-j", "DROP")

    def heal(self, node: NetnsNode) -> None:
        _run("ip", "netns", "exec", node.netns, "iptables", "-F")

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for veth in self.veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        subprocess.run(["iptables", "-D", *self._forward_rule], capture_output=True)
