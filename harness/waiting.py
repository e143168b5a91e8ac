"""Waiting for a condition with a deadline, instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded machine or wasted on a fast one; these
poll a condition every `interval` until it holds or `timeout` passes, and then fail
with a message that says what was awaited. `wait_until` is for plain code: the
condition may raise to give up at once (a process that exited will never listen).
`wait_for` is for asyncio code: the condition may be sync or async, and an exception
from it counts as "not yet" (a node coming up refuses connections for a while); the
last one is quoted if the deadline passes. It returns the condition's truthy result,
so a poll can also fetch what it waited for (the leader, the statuses).
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

from harness import HarnessError

T = TypeVar("T")


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise HarnessError(f"timed out after {timeout:g}s waiting for {what}")


async def wait_for(cond: Callable[[], T | Awaitable[T]], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll `cond` (sync or async) until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = cond()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except Exception as exc:  # a condition may fail while a node is coming up
            last_exc = exc
        await asyncio.sleep(interval)
    raise HarnessError(f"timed out after {timeout:g}s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))
