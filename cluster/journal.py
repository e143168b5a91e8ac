"""The Raft journal, replacing PySyncObj's FileJournal (installed via `createJournal`).

Why our own: the stock journal keeps every entry in RAM and in a MAP_SHARED mmap (so
a busy node's memory grows with its log), has no checksums, uses 32-bit offsets (a
4 GiB ceiling between compactions), compacts by rewriting the file in place (a kill
mid-rewrite loses the tail), and drops a suffix on any overlapping append (see
`deleteEntriesFrom`).

Format: `MQ9JRNL1`, then records `len:u32 crc32:u32 idx:u64 term:u64 command`, where
the CRC covers idx, term and command. Each `add` is one `os.write`, so an entry the
node acknowledged is in the kernel's page cache and survives `kill -9` (fsync is not
used: like PySyncObj, we survive process crashes, not power loss). Opening scans the
file and stops at the first torn or corrupt record, truncating it away.

Memory: an index of (offset, idx, term) per entry, plus the most recent commands up
to `cache_bytes`; older entries are read back with `pread` when a lagging follower
needs them. Slices are lazy views, because PySyncObj asks for "everything from i" and
then keeps only 64 KiB of it.

Compaction (`deleteEntriesTo`) writes the kept entries to a new file, fsyncs it and
renames it over the old one: a crash leaves either the old or the new journal whole.

The follower guard: PySyncObj 0.3.17 deletes everything after `prevLogIdx` whenever an
append_entries message overlaps what the follower already holds, although Raft only
allows dropping entries on a term conflict. `deleteEntriesFrom` therefore stashes the
suffix; `add` takes a stashed entry back when the leader sends the same index and term
again, and drops the stash at a real conflict; `restore_stash` (called by RaftNode
after each message is handled, so PySyncObj's commit clamp only saw what the message
carried) puts back what is left.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections import OrderedDict
from typing import Iterator

import msgspec

log = logging.getLogger("mq9.journal")

MAGIC = b"MQ9JRNL1"
_HEAD = struct.Struct("<IIQQ")  # len (of idx+term+command), crc32, idx, term
_BODY = struct.Struct("<QQ")
Entry = tuple  # (command: bytes, idx: int, term: int)


def fsync_dir(path: str) -> None:
    """Make a rename or a new file in `path`'s directory durable: the file's own fsync
    does not persist the directory entry, and after a power cut the old name could come
    back (for .meta: an old term and vote, and a node that votes twice in one term)."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Meta:
    """Commit index, current term and vote: a small file replaced atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.data: dict = {}
        try:
            with open(path, "rb") as f:
                self.data = msgspec.msgpack.decode(f.read())
        except (FileNotFoundError, msgspec.DecodeError):
            self.data = {}
        self.dirty = False

    def save(self, sync: bool = False) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(msgspec.msgpack.encode(self.data))
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if sync:
            fsync_dir(self.path)
        self.dirty = False


class JournalView:
    """A lazy slice of the journal: entries are read only when touched."""

    __slots__ = ("_journal", "_start", "_stop")

    def __init__(self, journal: "Journal", start: int, stop: int) -> None:
        self._journal = journal
        self._start = start
        self._stop = max(start, stop)

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, item):
        n = len(self)
        if isinstance(item, slice):
            start, stop, step = item.indices(n)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return JournalView(self._journal, self._start + start, self._start + stop)
        if item < 0:
            item += n
        if not 0 <= item < n:
            raise IndexError(item)
        return self._journal[self._start + item]

    def __iter__(self) -> Iterator[Entry]:
        for i in range(self._start, self._stop):
            yield self._journal[i]

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __reduce__(self):
        """PySyncObj pickles slices into append_entries messages: send the entries, not the view."""
        return (list, (list(self),))


class Journal:
    """PySyncObj's Journal interface over one append-only file."""

    def __init__(self, path: str, cache_bytes: int = 32 << 20) -> None:
        self.path = path
        self.cache_bytes = cache_bytes
        self._meta = _Meta(path + ".meta")
        self._index: list[tuple[int, int, int]] = []  # (offset of record, idx, term)
        self._cache: OrderedDict[int, bytes] = OrderedDict()  # position -> command, most recent last
        self._cached = 0
        self._stash: list[Entry] = []
        self.conflict = False  # set when an add() met a different term where we had an entry
        self._fd = self._open()

    # ---- file ------------------------------------------------------------------------

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        size = os.fstat(fd).st_size
        if size < len(MAGIC):
            os.ftruncate(fd, 0)
            os.pwrite(fd, MAGIC, 0)
            self._end = len(MAGIC)
            return fd
        if os.pread(fd, len(MAGIC), 0) != MAGIC:
            raise ValueError(f"{self.path}: not an mq9 journal")
        offset = len(MAGIC)
        while offset + _HEAD.size <= size:
            length, crc, idx, term = _HEAD.unpack(os.pread(fd, _HEAD.size, offset))
            body_len = length - _BODY.size
            if body_len < 0 or offset + 8 + length > size:
                break
            command = os.pread(fd, body_len, offset + _HEAD.size)
            if zlib.crc32(command, zlib.crc32(_BODY.pack(idx, term))) != crc:
                log.warning("journal %s: bad checksum at offset %d, dropping the rest", self.path, offset)
                break
            if self._index and idx != self._index[-1][1] + 1:
                log.warning("journal %s: index gap at offset %d, dropping the rest", self.path, offset)
                break
            self._index.append((offset, idx, term))
            offset += 8 + length
        if offset != size:
            log.warning("journal %s: truncating %d bytes of torn tail", self.path, size - offset)
            os.ftruncate(fd, offset)
        self._end = offset
        return fd

    def _append(self, command: bytes, idx: int, term: int) -> None:
        body = _BODY.pack(idx, term)
        crc = zlib.crc32(command, zlib.crc32(body))
        record = _HEAD.pack(len(body) + len(command), crc, idx, term) + command
        os.pwrite(self._fd, record, self._end)
        self._index.append((self._end, idx, term))
        self._remember(len(self._index) - 1, command)
        self._end += len(record)

    def _remember(self, position: int, command: bytes) -> None:
        self._cache[position] = command
        self._cached += len(command)
        while self._cached > self.cache_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)

    def _read(self, position: int) -> bytes:
        command = self._cache.get(position)
        if command is not None:
            return command
        offset, _, _ = self._index[position]
        length = _HEAD.unpack(os.pread(self._fd, _HEAD.size, offset))[0]
        return os.pread(self._fd, length - _BODY.size, offset + _HEAD.size)

    def _truncate_at(self, position: int) -> None:
        if position >= len(self._index):
            return
        self._end = self._index[position][0]
        os.ftruncate(self._fd, self._end)
        del self._index[position:]
        for p in [p for p in self._cache if p >= position]:
            self._cached -= len(self._cache.pop(p))

    # ---- PySyncObj's interface -------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        if self._stash:
            if self._stash[0][1] == idx and self._stash[0][2] == term:
                self._stash.pop(0)  # the leader resent an entry we had: take it back
            else:
                self._stash = []  # a real conflict: what we had from here on is gone
                self.conflict = True
        self._append(bytes(command), idx, term)

    def clear(self) -> None:
        self._stash = []
        self._truncate_at(0)
        self._cache.clear()
        self._cached = 0

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        if entryFrom < len(self._index):
            self._stash = [self[i] for i in range(entryFrom, len(self._index))]
            self._truncate_at(entryFrom)

    def drop_stash(self) -> None:
        """Forget stashed entries (what stock PySyncObj does: they stay deleted)."""
        self._stash = []

    def restore_stash(self) -> int:
        """Put back stashed entries that still follow the log. Returns how many."""
        restored = 0
        while self._stash:
            command, idx, term = self._stash[0]
            if self._index and idx != self._index[-1][1] + 1:
                break
            self._stash.pop(0)
            self._append(command, idx, term)
            restored += 1
        self._stash = []
        return restored

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Compaction: keep entries from position `entryTo` on, in a new file renamed into place."""
        keep = [self[i] for i in range(entryTo, len(self._index))]
        tmp = self.path + ".compact"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        chunks = [MAGIC]
        index = []
        offset = len(MAGIC)
        for command, idx, term in keep:
            body = _BODY.pack(idx, term)
            record = _HEAD.pack(len(body) + len(command), zlib.crc32(command, zlib.crc32(body)), idx, term) + command
            index.append((offset, idx, term))
            chunks.append(record)
            offset += len(record)
        os.write(fd, b"".join(chunks))
        os.fsync(fd)
        os.replace(tmp, self.path)
        fsync_dir(self.path)
        os.close(self._fd)
        self._fd = fd
        self._end = offset
        self._index = index
        self._cache = OrderedDict()
        self._cached = 0
        for position, (command, _, _) in enumerate(keep[-256:], start=max(0, len(keep) - 256)):
            self._remember(position, command)

    def __getitem__(self, item):
        if isinstance(item, slice):
            start, stop, step = item.indices(len(self._index))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return JournalView(self, start, stop)
        if item < 0:
            item += len(self._index)
        _, idx, term = self._index[item]
        return self._read(item), idx, term

    def __len__(self) -> int:
        return len(self._index)

    def _destroy(self) -> None:
        if self._meta.dirty:
            self._meta.save()
        os.close(self._fd)

    def flush(self) -> None:
        os.fsync(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if self._meta.data.get("commit") != raftCommitIndex:
            self._meta.data["commit"] = raftCommitIndex
            self._meta.dirty = True

    def getRaftCommitIndex(self) -> int:
        return self._meta.data.get("commit", 1)

    def setCurrentTerm(self, term: int, votedForNodeId) -> None:
        # Raft: term and vote are durable before any message that reflects them is sent
        self._meta.data["term"] = term
        self._meta.data["vote"] = votedForNodeId
        self._meta.save(sync=True)

    def getCurrentTerm(self) -> int:
        return self._meta.data.get("term", 0)

    def getVotedForNodeId(self):
        return self._meta.data.get("vote")

    def onOneSecondTimer(self) -> None:
        if self._meta.dirty:
            self._meta.save()
