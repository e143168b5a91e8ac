"""How much is stored: messages and bytes per mailbox, counted without stalling the node.

Counting means walking every message key in RocksDB, which for a million messages takes
about a second of Python. The census does it in chunks of `CHUNK` keys with a loop pass
between them (clients keep being served), and keeps the last complete count with the log
time and wall time it was taken. It runs only when someone asks (/mailboxz, /metrics),
at most once per `interval()`: at least `MIN_INTERVAL_S`, and ten times the last walk's
duration, so counting never takes more than a tenth of the node's time.

The figures are this node's view as of `taken_at`: exact for that moment's applied state
(one RocksDB iterator, a consistent snapshot), a few seconds old at most when read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cluster import keys
from cluster.store import Store, bounded_iter

CHUNK = 5000
MIN_INTERVAL_S = 2.0


@dataclass
class Count:
    by_level: list[int] = field(default_factory=lambda: [0] * keys.LEVELS)
    bytes: int = 0


@dataclass
class Snapshot:
    per_mailbox: dict[str, Count] = field(default_factory=dict)
    messages: int = 0
    bytes: int = 0
    mailboxes: int = 0
    taken_at: float = 0.0  # time.time() when the walk started; 0: never
    took_s: float = 0.0


class Census:
    """The last complete count of what this node stores, refreshed on demand."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.last = Snapshot()
        self._running: asyncio.Task | None = None

    def interval(self) -> float:
        return max(MIN_INTERVAL_S, 10 * self.last.took_s)

    async def current(self) -> Snapshot:
        """The last count; a new one is started when it is older than `interval()`, and
        awaited when there is none yet."""
        stale = time.time() - self.last.taken_at >= self.interval()
        if stale and (self._running is None or self._running.done()):
            self._running = asyncio.get_running_loop().create_task(self._walk())
        if self.last.taken_at == 0.0 and self._running is not None:
            await asyncio.shield(self._running)
        return self.last

    async def _walk(self) -> None:
        started, t0 = time.time(), time.monotonic()
        snap = Snapshot(taken_at=started)
        per = snap.per_mailbox
        db = self.store.db
        async for key, _ in self._chunked(db, b"B"):
            per[key[1:].decode()] = Count()
        if db is not self.store.db:
            return  # a snapshot install swapped the database: count again next time
        snap.mailboxes = len(per)
        async for key, size in self._chunked(db, b"Q"):
            mail_id, level = key[1:-10].decode(), key[-9]  # Q {mail_id} 0 {level:1} {seq:8}
            count = per.get(mail_id)
            if count is None:
                count = per[mail_id] = Count()
            count.by_level[level] += 1
            count.bytes += size
            snap.messages += 1
            snap.bytes += size
        if db is not self.store.db:
            return
        snap.took_s = time.monotonic() - t0
        self.last = snap

    async def _chunked(self, db, table: bytes):
        """(key, value size) of one table, a loop pass every CHUNK keys; stops early when
        the database was swapped meanwhile (its iterator must not be used then)."""
        it = bounded_iter(db, table, keys.end_of(table))
        n = 0
        while it.valid():
            yield it.key(), len(it.value())
            n += 1
            if n % CHUNK == 0:
                await asyncio.sleep(0)
                if db is not self.store.db:
                    return
            it.next()
