"""What mq9_bench.py's two systems have in common: a cluster of n server processes.

`Cluster` holds the nodes (harness processes, SIGKILLed if the benchmark dies, in a
session of their own so Ctrl-C reaches only the benchmark), their client URLs and data
directories; it says whether the cluster broke (a node died that the benchmark did not
kill) and describes itself for the report. The admin calls (create a mailbox, a stream,
read a total) are one short nats-py connection each, run to completion with a deadline
(`arun`), so the benchmark itself stays plain synchronous code between client runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import nats

from benchmarks.common.servers import SERVER_OPTIONS, stop_all
from harness.process import Process

# harness Process options of every node mq9_bench.py starts
NODE_OPTIONS = {**SERVER_OPTIONS, "new_session": True, "tail_lines": 20}


def arun(coro, timeout: float):
    """Run one admin coroutine to completion with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _quiet(exc: Exception) -> None:
    pass


async def nats_connect(url: str):
    return await asyncio.wait_for(nats.connect(url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=1,
                                               error_cb=_quiet), 10)


@contextlib.asynccontextmanager
async def connected(url: str):
    """`async with connected(url) as nc:` one admin connection, closed whatever happens."""
    nc = await nats_connect(url)
    try:
        yield nc
    finally:
        await nc.close()


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass  # compaction removed it meanwhile
    return total


class Cluster:
    system = ""

    def __init__(self, n: int, workdir: Path) -> None:
        self.n = n
        self.workdir = workdir
        self.nodes: list[Process] = []
        self.ports: list[int] = []
        self.data_dirs: list[Path] = []
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def stop(self) -> None:
        stop_all(self.nodes)

    def broken(self) -> str | None:
        """Why the cluster can no longer be measured (a node died on its own), or None."""
        for node in self.nodes:
            if not node.stopped_by_us and node.proc is not None and node.proc.poll() is not None:
                return (f"{node.name} exited with {node.proc.returncode} during the run; its log ends:\n"
                        f"{node.log_tail()}")
        return None

    def log_tails(self, lines: int = 12) -> str:
        return "\n".join(f"--- {n.name} ({n.log_path})\n{n.log_tail(lines)}" for n in self.nodes)

    def describe(self) -> dict:
        return {"system": self.system, "nodes": self.n, "urls": self.urls,
                "logs": [str(n.log_path) for n in self.nodes]}
