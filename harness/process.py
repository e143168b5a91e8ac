"""One server process with its log file: start, wait for its port, stop, kill, inspect.

`Process` runs a command with stdout and stderr appended to a log file (a header line
per start, so one log holds every life of a node), and stdin from /dev/null: servers
read no terminal. Readiness is "accepts TCP connections on its port"; a process that
exits first fails the wait at once with its log tail, so a failure says what the
server saw. `stop()` is SIGTERM and a deadline, then SIGKILL: a clean exit is
reported, never awaited forever. `kill()` is SIGKILL, as a crash would be.

What differs between users is a constructor argument, not a subclass:
  - `die_with_parent`: the child gets SIGKILL when the process that started it dies
    (PR_SET_PDEATHSIG), so no server outlives a crashed benchmark run;
  - `new_session`: the child is not in the terminal's process group, so Ctrl-C reaches
    only the harness, which then stops its servers in order;
  - `wrapper`: a command prefix such as `py-spy record -o x.svg --`; SIGTERM then goes to
    the wrapped server (the wrapper's child) so the wrapper outlives it to write its
    output, and stop() gives it a minute to do so;
  - `attach_profiler()`: `py-spy record --pid` beside a running server instead, awaited
    after the server stops.
Subclasses build their command in `base_command()` (mq9_nodes.Mq9Node does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable

from harness import HarnessError
from harness.ports import port_open

WRAPPED_STOP_S = 60.0  # py-spy needs a while to write its flame graph after the server exits


def die_with_parent() -> None:
    """In the child (a preexec_fn): get SIGKILL if the parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def _sigkill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a live process, in bytes; {} if it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


class Process:
    """One server process; `port` is where it accepts clients (None: no readiness check)."""

    def __init__(self, name: str, cmd: list[str] | None, log_path: Path, *, port: int | None = None,
                 host: str = "127.0.0.1", env: dict[str, str] | None = None, cwd: Path | None = None,
                 wrapper: list[str] | None = None, die_with_parent: bool = False, new_session: bool = False,
                 tail_lines: int = 60) -> None:
        self.name = name
        self.cmd = list(cmd or [])
        self.log_path = log_path
        self.port = port
        self.host = host
        self.env = env if env is not None else {}  # on top of os.environ, read at each start
        self.cwd = cwd
        self.wrapper = list(wrapper or [])
        self.die_with_parent = die_with_parent
        self.new_session = new_session
        self.tail_lines = tail_lines
        self.proc: subprocess.Popen | None = None
        self.stopped_by_us = False  # kill() or stop() ended it, not a crash
        self.profiler: subprocess.Popen | None = None

    # -- the command and its environment

    def base_command(self) -> list[str]:
        return list(self.cmd)

    def command(self) -> list[str]:
        return [*self.wrapper, *self.base_command()]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def profiled(self) -> bool:
        return bool(self.wrapper)

    # -- life

    def start(self, wait: bool = True, timeout: float = 20.0) -> "Process":
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.environment(), cwd=str(self.cwd) if self.cwd else None,
                                         preexec_fn=die_with_parent if self.die_with_parent else None,
                                         start_new_session=self.new_session)
        self.stopped_by_us = False
        if wait:
            self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        """Accepting clients; raises if the process has exited (it never will be)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"{self.name} exited with {self.proc.returncode} before accepting clients:\n"
                               f"{self.log_tail()}")
        return self.port is None or port_open(self.host, self.port)

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_ready_all([self], timeout)

    def attach_profiler(self, py_spy: str, svg: Path) -> None:
        """py-spy record --pid beside the running process: it writes the flame graph when the process exits."""
        with open(self.log_path.with_suffix(".py-spy.log"), "ab") as log:
            self.profiler = subprocess.Popen([py_spy, "record", "--pid", str(self.pid), "-o", str(svg)],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=die_with_parent, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self) -> str:
        return f"{self.name} exited with {self.proc.returncode if self.proc else None}"

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stopped_by_us = True
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> bool:
        """SIGTERM and up to `timeout` s for the exit, else SIGKILL; then the attached profiler.

        True if the process exited by itself (or was not running), False if it was killed."""
        clean = True
        if self.alive():
            self.stopped_by_us = True
            target = self.proc.pid
            if self.wrapper:  # the server is the wrapper's child
                target = next(iter(children(self.proc.pid)), self.proc.pid)
                timeout = max(timeout, WRAPPED_STOP_S)
            try:
                os.kill(target, signal.SIGTERM)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
            if self.proc.poll() is None:
                clean = False
                if self.wrapper:
                    for pid in children(self.proc.pid):
                        _sigkill(pid)
                self.proc.kill()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        if self.profiler is not None and self.profiler.poll() is None:
            try:
                self.profiler.wait(WRAPPED_STOP_S)  # py-spy writes the SVG after its target exits
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait(10)
        return clean

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    # -- inspection

    def memory(self) -> dict[str, int]:
        return memory_of(self.pid) if self.alive() else {}

    def rss_bytes(self) -> int:
        return self.memory().get("VmRSS", 0)

    def log_tail(self, lines: int | None = None) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-(lines or self.tail_lines):])


def wait_ready_all(procs: Iterable[Process], timeout: float, interval: float = 0.02) -> None:
    """Until every process accepts clients; fails at once if one exits, else at the deadline."""
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while True:
        pending = [p for p in pending if not p.ready()]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(p.name for p in pending)
            raise HarnessError(f"{names} did not accept clients within {timeout:g}s; the log of "
                               f"{pending[0].name} ends:\n{pending[0].log_tail()}")
        time.sleep(interval)


def stop_all(procs: Iterable[Process], report=print) -> None:
    """Stop every process; one that fails to stop never keeps the others running."""
    for proc in procs:
        try:
            proc.stop()
        except Exception as exc:
            report(f"stopping {proc.name}: {exc}")
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
