"""Reads that see every acknowledged write, on any node (contract section 7).

A node's RocksDB may lag the cluster by the entries it has not applied yet, so a LIST
answered from it at once can miss a message another node has already acknowledged. The
barrier is Raft's ReadIndex done through the log: a read waits until an entry that was
submitted after the read arrived has been applied on this node; everything committed
before the read arrived is then applied too. The entry is a `Tick` (no state change of
its own), and all reads that arrive in one loop pass share one, so a burst of reads
costs one small entry and one Raft round trip.

Without a reachable majority the barrier never commits: the read is answered 503 at the
write deadline, as a write would be, never with data that may be stale.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from cluster import commands as c
from cluster.effects import Failure, Result
from cluster.replicator import Replicator

log = logging.getLogger("mq9.reads")

Waiter = Callable[[Failure | None], None]


class ReadBarrier:
    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator
        self._waiting: list[Waiter] = []
        self.entries = 0  # barrier entries submitted (reads per entry = reads / entries)
        self.reads = 0

    def wait(self, then: Waiter) -> None:
        """Call `then(None)` once this node has applied everything committed now, or
        `then(failure)` if that cannot be confirmed (no quorum)."""
        self.reads += 1
        self._waiting.append(then)
        if len(self._waiting) == 1:
            asyncio.get_running_loop().call_soon(self._submit)

    def _submit(self) -> None:
        waiters, self._waiting = self._waiting, []
        self.entries += 1

        def applied(result: Result) -> None:
            failure = result if isinstance(result, Failure) else None
            for waiter in waiters:
                try:
                    waiter(failure)
                except Exception:
                    log.exception("read after barrier failed")

        self.replicator.write(c.Tick(), applied)
