"""Running one client process for mq9_bench.py, with progress bars and who was busy.

A client (benchmarks/mq9_clients.py for nats-py, natsbench for nats.c) prints "#P done
total" lines while it works and one JSON line at the end; the runner turns the first
into a rich progress bar and returns the second, with the command line and CPU figures
added. A client that passes its time cap is killed (its whole session) and reported as
an error, as is one that exits without a result; `on_line` lets a workload act on the
client's output as it comes (the failover workload kills the leader on it).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from rich.progress import Progress

from benchmarks.common import NATSBENCH, REPO
from benchmarks.mq9.plan import CLIENTS
from harness.process import die_with_parent


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a live process has used so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Runner:
    """Runs client processes, feeds their "#P done total" lines into rich progress bars.

    Every result also says who was busy: the client's CPU time (`client_cpu_s`, all its
    threads) and each server process's (`server_cpu_s`, for the pids in `servers`) while
    the client ran, beside its lifetime `wall_s`. A figure whose client used a whole core
    measures the client."""

    def __init__(self, progress: Progress, workdir: Path) -> None:
        self.progress = progress
        self.workdir = workdir
        self.servers: list[int] = []  # pids of the cluster under test (run_phase sets them)

    def run(self, cmd: list[str], label: str, timeout: float, total: int | None = None,
            on_line: Callable[[str, subprocess.Popen], None] | None = None, stdin: bool = False) -> dict:
        task = self.progress.add_task(label, total=total or None)
        fd, name = tempfile.mkstemp(prefix="client-", suffix=".err", dir=self.workdir)
        os.close(fd)
        err_path = Path(name)
        lines: queue.Queue = queue.Queue()
        result_line = None
        servers_before = [cpu_seconds(pid) for pid in self.servers]
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, text=True, cwd=REPO,
                                    env=dict(os.environ, PYTHONPATH=str(REPO)), preexec_fn=die_with_parent,
                                    start_new_session=True)

        def reader() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=reader, daemon=True).start()
        timed_out = False
        try:
            while True:
                if time.monotonic() - started > timeout:
                    timed_out = True
                    break
                try:
                    line = lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line.startswith("#P "):
                    parts = line.split()
                    try:
                        done, tot = int(parts[1]), int(parts[2])
                        self.progress.update(task, completed=done, total=tot or None)
                    except (IndexError, ValueError):
                        pass
                elif line.startswith("{"):
                    result_line = line
                if on_line is not None:
                    on_line(line, proc)
        finally:
            if proc.poll() is None and (timed_out or result_line is None):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            if stdin and proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            self.progress.stop_task(task)
            self.progress.update(task, visible=False)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client, now reaped
        client_cpu = (children.ru_utime - children_before.ru_utime) + (children.ru_stime - children_before.ru_stime)
        server_cpu = [cpu_seconds(pid) - before for pid, before in zip(self.servers, servers_before)]
        stderr_tail = err_path.read_text(errors="replace").strip().splitlines()[-6:]
        err_path.unlink(missing_ok=True)
        if timed_out and result_line is None:
            return {"error": f"client did not finish within {timeout:.0f}s (killed)", "cmd": cmd}
        if result_line is None:
            return {"error": f"client exited {proc.returncode} without a result: " + " | ".join(stderr_tail),
                    "cmd": cmd}
        try:
            out = json.loads(result_line)
        except json.JSONDecodeError as exc:
            return {"error": f"unparsable client output {result_line[:200]!r}: {exc}", "cmd": cmd}
        out["cmd"] = cmd
        out["wall_s"] = round(time.monotonic() - started, 3)
        out["client_cpu_s"] = round(client_cpu, 3)
        out["server_cpu_s"] = [round(x, 3) for x in server_cpu]
        return out


def py_client(workload: str, system: str, urls: list[str], target: str, timeout: float, **kw) -> list[str]:
    cmd = [sys.executable, str(CLIENTS), workload, "--system", system, "--urls", ",".join(urls),
           "--target", target, "--timeout", str(timeout)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return cmd


def c_client(mode: str, urls: list[str], subject: str, count: int, timeout: float, *extra: str) -> list[str]:
    return [str(NATSBENCH), "-m", mode, "-u", ",".join(urls), "-S", subject, "-n", str(count),
            "-t", str(timeout), "-p", *extra]
