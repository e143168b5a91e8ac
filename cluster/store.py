"""RocksDB (rocksdict, raw mode) behind a small interface: reads, one transaction per batch.

`Txn` is what apply sees: reads go through an overlay of the batch's own writes, so a
batch reads what it wrote, and everything lands in one `WriteBatch` together with the
applied Raft index and the log time (key `M`). A crash therefore leaves either the
whole batch or none of it, and a replay after restart skips entries at or below the
stored index. Unsynced writes with the WAL on survive a process crash (kill -9); the
WAL is never disabled.

Range reads inside a batch (`Txn.scan`) merge the database with the overlay's sorted
keys and hide what the batch deleted. Reads outside apply (`Store.scan`, `get`) see
the latest committed state; rocksdict 0.3.29 snapshots do not isolate iteration, so
readers that need a cut use the applied index and message sequence numbers instead.
"""

from __future__ import annotations

import bisect
import os
import shutil
import threading
from itertools import islice
from typing import Iterator

from rocksdict import Checkpoint, Options, Rdict, ReadOptions, WriteBatch

from cluster import keys


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_max_background_jobs(2)
    opts.set_write_buffer_size(16 << 20)
    opts.set_max_total_wal_size(128 << 20)
    opts.set_keep_log_file_num(2)
    # queues delete what they read: compact SST files full of tombstones early
    opts.add_compact_on_deletion_collector_factory(4096, 1024, 0.5)
    return opts


def bounded_iter(db: Rdict, lo: bytes, hi: bytes):
    """An iterator positioned at `lo` that stops at `hi` inside RocksDB: a seek into an
    empty range then does not walk the tombstones that lie beyond it."""
    opts = ReadOptions()
    opts.set_iterate_upper_bound(hi)
    it = db.iter(opts)
    it.seek(lo)
    return it


class Store:
    """One node's RocksDB."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.db = Rdict(path, _options())
        self.lock = threading.Lock()  # held while a batch commits or the DB is swapped

    def close(self) -> None:
        self.db.close()

    # ---- reads -----------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def applied(self) -> tuple[int, int, int]:
        """(last applied Raft index, log time in ms, digest of the applied log) as committed."""
        raw = self.db.get(keys.META)
        if raw is None:
            return 0, 0, 0
        digest = keys.unpack_u64(raw[16:24])[0] if len(raw) >= 24 else 0
        return keys.unpack_u64(raw[:8])[0], keys.unpack_u64(raw[8:16])[0], digest

    def scan(self, lo: bytes, hi: bytes, limit: int = 0) -> Iterator[tuple[bytes, bytes]]:
        """Key/value pairs with lo <= key < hi, in key order (latest committed state)."""
        it = bounded_iter(self.db, lo, hi)
        n = 0
        while it.valid():
            key = it.key()
            yield key, it.value()
            n += 1
            if limit and n >= limit:
                break
            it.next()

    def first(self, lo: bytes, hi: bytes) -> tuple[bytes, bytes] | None:
        it = bounded_iter(self.db, lo, hi)
        return (it.key(), it.value()) if it.valid() else None

    def last(self, prefix: bytes) -> bytes | None:
        """The greatest committed key starting with `prefix`, or None.

        Bounded above only: with rocksdict 0.3.29 an iterator given an iterate_lower_bound
        finds nothing on seek_for_prev (so this returned None for every prefix, and a
        restarted node saw no stored messages past a queue group's cursor)."""
        opts = ReadOptions()
        opts.set_iterate_upper_bound(keys.end_of(prefix))
        it = self.db.iter(opts)
        it.seek_to_last()
        if it.valid() and it.key().startswith(prefix):
            return it.key()
        return None

    # ---- writes ----------------------------------------------------------------------

    def begin(self) -> "Txn":
        return Txn(self)

    def commit(self, txn: "Txn", index: int, time_ms: int, digest: int = 0) -> None:
        txn.batch.put(keys.META, keys.pack_u64(index) + keys.pack_u64(time_ms) + keys.pack_u64(digest))
        self.write(txn)

    def write(self, txn: "Txn") -> None:
        """Write a transaction as it is (no new applied index: a change of layout, not of state)."""
        with self.lock:
            self.db.write(txn.batch)

    # ---- snapshots -------------------------------------------------------------------

    def checkpoint(self, target: str) -> None:
        """A consistent copy of the database at `target` (hard links where possible)."""
        if os.path.exists(target):
            shutil.rmtree(target)
        with self.lock:
            Checkpoint(self.db).create_checkpoint(target)

    def replace_with(self, source: str) -> None:
        """Swap the database for the checkpoint at `source` (a snapshot install)."""
        with self.lock:
            self.db.close()
            old = self.path + ".old"
            if os.path.exists(old):
                shutil.rmtree(old)
            os.rename(self.path, old)
            shutil.copytree(source, self.path)
            self.db = Rdict(self.path, _options())
            shutil.rmtree(old, ignore_errors=True)


class Txn:
    """The writes of one batch, readable before they commit.

    The overlay's keys are put in order only when a range read needs them: most batches
    (stores and acks) never scan, so a put costs a dict store and a WriteBatch call. Keys
    never leave the overlay (a delete stores None), so the keys added since the last
    range read are the dict's last ones, in insertion order.
    """

    __slots__ = ("store", "batch", "overlay", "_sorted", "_cleared")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.batch = WriteBatch(raw_mode=True)
        self.overlay: dict[bytes, bytes | None] = {}  # None: deleted in this batch
        self._sorted: list[bytes] = []  # overlay keys in order, as of the last range read
        self._cleared: list[tuple[bytes, bytes]] = []  # ranges deleted in this batch

    def _keys_in_order(self) -> list[bytes]:
        done = len(self._sorted)
        if len(self.overlay) > done:
            fresh = list(islice(self.overlay, done, None))
            fresh.sort()
            self._sorted += fresh  # two sorted runs: timsort merges them in one pass
            self._sorted.sort()
        return self._sorted

    def _in_cleared(self, key: bytes) -> bool:
        for lo, hi in self._cleared:
            if lo <= key < hi:
                return True
        return False

    def get(self, key: bytes) -> bytes | None:
        overlay = self.overlay
        if key in overlay:
            return overlay[key]
        if self._cleared and self._in_cleared(key):
            return None
        return self.store.db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.overlay[key] = value
        self.batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self.overlay[key] = None
        self.batch.delete(key)

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        """Delete every key in [lo, hi), committed and in this batch."""
        self.batch.delete_range(lo, hi)
        self._cleared.append((lo, hi))
        ordered = self._keys_in_order()
        start = bisect.bisect_left(ordered, lo)
        stop = bisect.bisect_left(ordered, hi)
        for key in ordered[start:stop]:
            self.overlay[key] = None

    def scan(self, lo: bytes, hi: bytes, limit: int = 0) -> Iterator[tuple[bytes, bytes]]:
        """Key/value pairs in [lo, hi) as this batch sees them, in key order."""
        overlay = self.overlay
        ordered = self._keys_in_order()
        start = bisect.bisect_left(ordered, lo)
        stop = bisect.bisect_left(ordered, hi)
        mine = ordered[start:stop]
        j = 0
        n = 0
        it = bounded_iter(self.store.db, lo, hi)
        db_key = it.key() if it.valid() else None
        while db_key is not None or j < len(mine):
            if db_key is not None and (j >= len(mine) or db_key < mine[j]):
                key, value = db_key, it.value()
                it.next()
                db_key = it.key() if it.valid() else None
                if key in overlay or (self._cleared and self._in_cleared(key)):
                    continue  # the overlay decides (below) or the key was range-deleted
            else:
                key = mine[j]
                j += 1
                if db_key == key:  # same key in both: the overlay wins
                    it.next()
                    db_key = it.key() if it.valid() else None
                value = overlay[key]
                if value is None:
                    continue
            yield key, value
            n += 1
            if limit and n >= limit:
                return

    def first(self, lo: bytes, hi: bytes) -> tuple[bytes, bytes] | None:
        for item in self.scan(lo, hi, 1):
            return item
        return None
