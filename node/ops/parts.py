"""What the monitoring endpoints read: one node's parts, gathered once by `node.app`.

Every endpoint is a function of a `NodeParts` (and the request's query), so the JSON
builders stay plain functions that a test can read beside the code, and the aiohttp
wiring (`monitor.py`) stays small.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

from cluster.replicator import Replicator
from node.config import Settings
from node.mq9.api import MailboxAPI
from node.mq9.cluster_view import ClusterView
from node.nats.routes import RouteManager
from node.nats.server import Server
from node.ops.census import Census


@dataclass
class NodeParts:
    settings: Settings
    server: Server
    replicator: Replicator
    view: ClusterView
    api: MailboxAPI
    routes: RouteManager | None = None
    census: Census | None = None
    cpu: "CpuSampler" = field(default_factory=lambda: CpuSampler())

    def __post_init__(self) -> None:
        if self.census is None:
            self.census = Census(self.replicator.store)


def rss_bytes() -> int:
    """Resident memory of this process, from /proc (what nats-server's `mem` reports)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuSampler:
    """CPU use in percent of one core since the previous call (since start the first time),
    as nats-server's `cpu` field: 100 means one core busy."""

    def __init__(self) -> None:
        self._at = time.monotonic()
        self._cpu = cpu_seconds()
        self._first = (self._at, self._cpu)

    def percent(self) -> float:
        now, cpu = time.monotonic(), cpu_seconds()
        if now - self._at < 0.5:  # too short a window to mean anything: since start
            at, before = self._first
        else:
            at, before = self._at, self._cpu
            self._at, self._cpu = now, cpu
        return round(100.0 * (cpu - before) / max(now - at, 1e-6), 1)
