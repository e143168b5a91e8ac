"""Running a benchmark from the command line: its console, its error, its exit codes.

A benchmark fails for reasons meant for the person running it (nats-server missing, a
cluster that did not come up): those are `BenchError`s, or the harness's own
`HarnessError`s, from which BenchError derives, and `run_main` prints them as one line
and exits 2 instead of a traceback. SIGTERM and SIGHUP become KeyboardInterrupt so they
unwind through the `finally` blocks that stop the servers (exit 130).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Callable

from rich.console import Console

from harness import HarnessError


def console_for(width: int) -> Console:
    """A console `width` wide when output goes to a file or pipe (wide enough for the tables)."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else width)


console = console_for(120)  # what the shared steps (installs, stopping servers) print to


class BenchError(HarnessError):
    """A failure with a message meant for the person running the benchmark."""


def _on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # unwind through the `finally` blocks that stop the servers


def run_main(parse_args: Callable[[list[str]], argparse.Namespace], main: Callable[[argparse.Namespace], int]) -> None:
    """Run a benchmark: main(parse_args(argv)); SIGTERM/SIGHUP unwind cleanly; errors become exit codes."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        sys.exit(main(parse_args(sys.argv[1:])))
    except HarnessError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
