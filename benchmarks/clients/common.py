"""What every nats-py benchmark client does the same way: connect, note errors, report.

A client process prints "#P done total" progress lines (about five a second) and, last,
one JSON line with its figures; on a failure (connection refused, handshake, the overall
deadline) it prints {"error": ...} instead and exits 1, so the harness always has a line
to read. nats-py reports asynchronous errors through a callback and would print
tracebacks otherwise: they are noted instead, the first five kept for the result's
"client_errors".
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from importlib.metadata import version
from typing import Any, Callable, Coroutine

import nats

errors: list[str] = []  # asynchronous client errors and the first failed requests
KEPT_ERRORS = 5
PENDING_SIZE = 8 << 20  # mq9_clients.py's connections: room for 256 publishes of 16 KiB in flight (workload 8)


def client_name() -> str:
    return f"nats-py {version('nats-py')}"


def note(exc: object) -> None:
    if len(errors) < KEPT_ERRORS:
        errors.append(exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}")


async def connect(url: str, name: str, **options: Any):
    async def on_error(exc: Exception) -> None:  # keep nats-py from printing tracebacks
        note(exc)

    # allow_reconnect=False covers drops after connecting; the initial attempt still loops
    # over the server pool until max_reconnect_attempts (0 would mean forever), so bound it.
    try:
        return await asyncio.wait_for(nats.connect(
            url, name=name, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=1,
            reconnect_time_wait=0.2, error_cb=on_error, **options,
        ), timeout=15)
    except Exception as exc:
        raise ConnectionError(f"cannot connect to {url}: {errors[-1] if errors else repr(exc)}") from exc


async def close_all(conns) -> None:
    """Close every connection, each within 5 s, whatever state it is in."""
    for nc in conns:
        try:
            await asyncio.wait_for(nc.close(), 5)
        except Exception:
            pass


class Progress:
    """Prints "#P done total" at most every 0.2 s."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = 0.0

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 0.2:
            self.last = now
            print(f"#P {done} {self.total}", flush=True)


def with_errors(result: dict) -> dict:
    if errors:
        result["client_errors"] = errors[:KEPT_ERRORS]
    return result


def run_process(work: Coroutine, timeout: float, failure: Callable[[str], dict]) -> None:
    """Run the client's work with an overall deadline and print its JSON line (exit 1 on a failure)."""
    try:
        out = asyncio.run(asyncio.wait_for(work, timeout=timeout))
    except Exception as exc:  # connection refused, handshake failure, overall timeout
        print(json.dumps(failure(f"{type(exc).__name__}: {exc}")), flush=True)
        sys.exit(1)
    print(json.dumps(out), flush=True)
