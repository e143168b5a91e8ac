"""Free loopback ports, each handed out once.

A `PortPool` hands out ports from one range, chosen at random among those nobody
listens on (a bind probe on 127.0.0.1) and that it never handed out before. The
second rule matters more than the probe: the nodes of a cluster pick their ports
before any of them binds, so a probe alone would let node 2's client port be node 1's
Raft port. `take(offsets)` reserves a port together with port + each offset (an mq9
node's Raft port is its client port + 2000, its routes + 1000), all free and all new.

Each user keeps its own range, so runs of one cannot take the other's ports: tests
use 20000-31999 (below Linux's ephemeral range, 32768+, so outgoing connections of
other nodes and clients cannot be holding a port by the time a node binds it), the
benchmarks 19000-19999.
"""

from __future__ import annotations

import random
import socket

from harness import HarnessError

TRIES = 500  # candidates probed before giving up


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int) -> bool:
    """Something accepts TCP connections on host:port (within 0.2 s)."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class PortPool:
    """Ports low..high (inclusive) for one test session or one benchmark run."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low
        self.high = high
        self.taken: set[int] = set()  # every port handed out, with its offsets

    def take(self, offsets: tuple[int, ...] = (0,)) -> int:
        """A port p such that p + each offset (0 always included) is free and new.

        p itself and p + the largest positive offset stay within the range; a negative
        offset may reach below it (the benchmarks' route ports: Raft port - 1000)."""
        offsets = tuple(sorted({0, *offsets}))
        top = self.high - max(offsets)
        candidates = [p for p in range(self.low, top + 1) if all(p + off not in self.taken for off in offsets)]
        random.shuffle(candidates)
        for port in candidates[:TRIES]:
            if all(bindable(port + off) for off in offsets):
                self.taken.update(port + off for off in offsets)
                return port
        raise HarnessError(f"no free port in {self.low}-{self.high}")
