"""Raft snapshots made from RocksDB checkpoints, in one self-contained file.

PySyncObj calls `write(file, meta)` in a tick (on the event loop) when it compacts the log, renames
the file into place when we return, and streams the same file to followers that fell
behind the log. So the file must hold everything: it is an uncompressed tar whose
first member is `meta` (PySyncObj's own tuple: the last two applied entries and the
cluster, pickled as PySyncObj does) and whose other members are a RocksDB checkpoint
taken at that moment (hard links, about a millisecond, then copied into the tar).

`read(file)` is called at start-up and when a leader installs a snapshot. If our
database has already applied at least as far as the snapshot (the usual start-up
case) only the meta is read; otherwise the checkpoint is unpacked and swapped in.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import shutil
import tarfile
import time
from typing import Callable

from cluster.store import Store

log = logging.getLogger("mq9.snapshot")


def write(store: Store, path: str, meta: tuple) -> None:
    started = time.monotonic()
    work = path + ".checkpoint"
    store.checkpoint(work)
    try:
        with tarfile.open(path, "w") as tar:
            blob = pickle.dumps(meta)
            info = tarfile.TarInfo("meta")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            tar.add(work, arcname="db")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("Snapshot written at index %d (%d bytes, %.0f ms)", snapshot_index(meta),
             os.path.getsize(path), (time.monotonic() - started) * 1000)


def snapshot_index(meta: tuple) -> int:
    """The Raft index the snapshot covers: that of the last applied entry in its meta."""
    return meta[0][1]


def read(store: Store, path: str, on_swapped: Callable[[], None]) -> tuple:
    with tarfile.open(path, "r") as tar:
        first = tar.next()
        if first is None or first.name != "meta":
            raise ValueError(f"{path}: not an mq9 snapshot")
        meta = pickle.loads(tar.extractfile(first).read())
        index = snapshot_index(meta)
        applied = store.applied()[0]
        if applied >= index:
            return meta
        work = path + ".restore"
        shutil.rmtree(work, ignore_errors=True)
        tar.extractall(work, filter="data")
    try:
        store.replace_with(os.path.join(work, "db"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    on_swapped()
    log.info("Installed snapshot at index %d (was at %d)", index, applied)
    return meta
