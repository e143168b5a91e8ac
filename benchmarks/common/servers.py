"""How the benchmarks run servers: their port range and their process options.

Every port a benchmark run listens on comes from 19000-19999, out of the way of the
tests' 20000-31999, so a benchmark and the tests can run on one machine at once. Every
server the benchmarks start gets SIGKILL if the benchmark dies (no server outlives a
crashed run) and runs from the repository root. Stopping is `stop_all`: one server
that fails to stop never keeps the others running.
"""

from __future__ import annotations

from typing import Iterable

from rich.markup import escape

from benchmarks.common import REPO
from benchmarks.common.cli import console
from harness import process
from harness.ports import PortPool

PORT_RANGE = (19000, 19999)
_ports = PortPool(*PORT_RANGE)

# harness.process.Process options of every benchmark server
SERVER_OPTIONS = {"cwd": REPO, "die_with_parent": True}


def free_port(also: tuple[int, ...] = ()) -> int:
    """A port in PORT_RANGE nobody listens on and this run has not handed out; with port + each
    offset in `also` free and new too (they are taken with it)."""
    return _ports.take((0, *also))


def stop_all(procs: Iterable[process.Process]) -> None:
    process.stop_all(procs, report=lambda text: console.print(f"[red]{escape(text)}[/]"))
