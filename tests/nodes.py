"""Start and stop real node processes for tests; wait for conditions with deadlines.

`NodeProcess` runs `python -m node.cli serve` with its own free ports and data dir,
logs to a file, and kills with SIGKILL (`kill()`) or stops with SIGTERM (`stop()`).
On a failing test the fixtures print each node's log tail, so a failure says what the
node saw. Nothing here sleeps a fixed time: `wait_for` polls a condition until a
deadline and fails with a message.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

REPO = Path(__file__).resolve().parent.parent


_handed_out: set[int] = set()  # every port free_port gave this test session (with its offsets)


def free_port(offsets: tuple[int, ...] = (0,)) -> int:
    """A port p such that p + each offset is free on 127.0.0.1 (best effort).

    Chosen below Linux's ephemeral range (32768+), so the outgoing connections of other
    nodes and clients cannot be holding it by the time the node binds it, and never one
    this session handed out before: the nodes of a cluster pick their ports before any of
    them binds, so a probe alone would let node 2's client port be node 1's Raft port.
    """
    import random

    for _ in range(500):
        port = random.randrange(20000, 30000 - max(offsets) + 2000)
        if port + max(offsets) >= 32768 or any(port + off in _handed_out for off in offsets):
            continue
        ok = True
        for off in offsets:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + off))
                except OSError:
                    ok = False
                    break
        if ok:
            _handed_out.update(port + off for off in offsets)
            return port
    raise RuntimeError("no free port")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_for(cond: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll `cond` (sync or async) until it is true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = cond()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
        except Exception as exc:  # a condition may fail while a node is coming up
            last_exc = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


class NodeProcess:
    """One `mq9 serve` process."""

    def __init__(self, workdir: Path, name: str = "n1", port: int | None = None, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port or free_port((0, 1000, 2000))
        self.workdir = workdir
        self.data = workdir / f"data-{name}"
        self.log_path = workdir / f"{name}.log"
        self.extra = list(extra or [])
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def raft_address(self) -> str:
        return f"127.0.0.1:{self.port + 2000}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "node.cli", "serve", "--name", self.name,
                "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data), *self.extra]

    def start(self, wait: bool = True, timeout: float = 20.0) -> "NodeProcess":
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONPATH"] = str(REPO)
        log = open(self.log_path, "ab")
        log.write(f"---- start {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.workdir))
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            return port_open("127.0.0.1", self.port)
        wait_until(ready, timeout, f"node {self.name} to accept clients")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"node {self.name} did not stop on SIGTERM:\n{self.log_tail()}")

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


def cluster_of(workdir: Path, n: int = 3, prefix: str = "n", extra: list[str] | None = None,
               env: dict[str, str] | None = None) -> list[NodeProcess]:
    """n node processes that know each other as Raft peers (not started)."""
    nodes = [NodeProcess(workdir, f"{prefix}{i + 1}", extra=list(extra or []), env=env) for i in range(n)]
    for node in nodes:
        for other in nodes:
            if other is not node:
                node.extra += ["--peer", f"127.0.0.1:{other.port + 2000}"]
    return nodes
