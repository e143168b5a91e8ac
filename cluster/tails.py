"""Where a queue group finds its next message without a RocksDB seek: an in-memory tail.

A group's next candidate at a level is the first stored message at or after its cursor.
Asking RocksDB means an iterator and a seek per hand-out, and a work queue hands out
one message per acknowledgement. For mailboxes that have groups, apply keeps instead,
per level, the sequence numbers of the messages stored there in order (`LevelTail`),
exact from `known_from` on: every message stored at or after that point is in it,
every message removed is taken out. Below `known_from` (what was stored before the
tail existed, or fell off it) the caller asks RocksDB, as before.

The tail is a cache, a pure function of the store, so every node gives the same
answers whatever its tail holds: it is created lazily, dropped with its mailbox and
whenever the state is reloaded, and never changes what apply writes. Entries below
every group's cursor are never asked for again and are trimmed; a tail that grows past
`TAIL_MAX` (a group that does not keep up) is emptied and starts again at the next
store, so its memory stays bounded: 8 bytes per message not yet handed out, at most
2 MiB per level of a mailbox.
"""

from __future__ import annotations

import bisect
from array import array

TAIL_MAX = 1 << 18  # sequence numbers kept per level at most (8 bytes each: 2 MiB)
_COMPACT_AT = 4_096  # trimmed entries that are dropped from the array at once


class LevelTail:
    """Sequence numbers stored at one level of one mailbox, exact from `known_from` on."""

    __slots__ = ("seqs", "head", "known_from", "limit")

    def __init__(self, known_from: int, limit: int = TAIL_MAX) -> None:
        self.seqs = array("q")  # increasing; live entries are seqs[head:]
        self.head = 0
        self.known_from = known_from
        self.limit = limit

    def __len__(self) -> int:
        return len(self.seqs) - self.head

    def stored(self, seq: int) -> None:
        """A message was stored at this level (sequence numbers only grow)."""
        if len(self.seqs) - self.head >= self.limit:  # nobody is keeping up: start again
            self.seqs = array("q")
            self.head = 0
            self.known_from = seq + 1
            return
        if seq >= self.known_from:
            self.seqs.append(seq)

    def removed(self, seq: int) -> None:
        """A message left the mailbox (acknowledged, deleted)."""
        seqs, head = self.seqs, self.head
        if seq < self.known_from or head >= len(seqs) or seq < seqs[head]:
            return  # not here: below the tail, or already trimmed (a handed-out message)
        if seqs[head] == seq:
            self._advance(head + 1)
            return
        i = bisect.bisect_left(seqs, seq, head)
        if i < len(seqs) and seqs[i] == seq:
            del seqs[i]

    def take(self, cursor: int, count: int) -> list[int]:
        """Up to `count` stored seqs >= cursor, in order, for cursor >= known_from."""
        seqs, head = self.seqs, self.head
        if head >= len(seqs):
            return []
        # the usual case: trimming keeps the head at the lowest cursor
        i = head if seqs[head] >= cursor else bisect.bisect_left(seqs, cursor, head)
        return seqs[i:i + count].tolist()

    def trim(self, below: int) -> None:
        """No group will ask for anything below `below` again: forget it."""
        if below <= self.known_from:
            return
        self.known_from = below
        seqs, head = self.seqs, self.head
        if head < len(seqs) and seqs[head] < below:
            if head + 1 >= len(seqs) or seqs[head + 1] >= below:  # the usual case: one handed out
                self._advance(head + 1)
            else:
                self._advance(bisect.bisect_left(seqs, below, head))

    def _advance(self, head: int) -> None:
        if head >= _COMPACT_AT and head * 2 >= len(self.seqs):
            del self.seqs[:head]
            head = 0
        self.head = head
