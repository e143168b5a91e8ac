"""Start and stop real node processes for tests; wait for conditions with deadlines.

`NodeProcess` runs `python -m node.cli serve` with its own free ports and data dir,
logs to a file, and kills with SIGKILL (`kill()`) or stops with SIGTERM (`stop()`).
On a failing test the fixtures print each node's log tail, so a failure says what the
node saw. Nothing here sleeps a fixed time: `wait_for` polls a condition until a
deadline and fails with a message.

The machinery is the shared harness (harness/: ports, waiting, process, mq9_nodes);
this module fixes what is the tests' own: ports from 20000-31999, each node's files in
the test's directory, and a stop that fails the test when SIGTERM does not end the node.
"""

from __future__ import annotations

from pathlib import Path

from harness import mq9_nodes
from harness.mq9_nodes import REPO, Mq9Node
from harness.ports import PortPool, port_open
from harness.waiting import wait_for, wait_until

__all__ = ["REPO", "NodeProcess", "cluster_of", "free_port", "port_open", "wait_for", "wait_until"]

_ports = PortPool(20000, 31999)  # this test session's; never one handed out before


def free_port(offsets: tuple[int, ...] = (0,)) -> int:
    """A port p such that p + each offset is free on 127.0.0.1 and new to this session."""
    return _ports.take(offsets)


class NodeProcess(Mq9Node):
    """One `mq9 serve` process, its data and log in `workdir`, its Raft port its client port + 2000."""

    def __init__(self, workdir: Path, name: str = "n1", port: int | None = None, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        super().__init__(name, port or free_port((0, 1000, 2000)), workdir / f"data-{name}", workdir / f"{name}.log",
                         extra=extra, env=env or {}, cwd=workdir)
        self.workdir = workdir

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if not super().stop(timeout):
            raise AssertionError(f"node {self.name} did not stop on SIGTERM:\n{self.log_tail()}")
        return self.proc.returncode if self.proc else 0


def cluster_of(workdir: Path, n: int = 3, prefix: str = "n", extra: list[str] | None = None,
               env: dict[str, str] | None = None) -> list[NodeProcess]:
    """n node processes that know each other as Raft peers (not started)."""
    return mq9_nodes.cluster_of([NodeProcess(workdir, f"{prefix}{i + 1}", extra=list(extra or []), env=env)
                                 for i in range(n)])
