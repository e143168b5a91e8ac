"""Delivery's cache of stored messages waiting for their hand-out (node/delivery.py)."""

from __future__ import annotations

from cluster.effects import MessageStored
from node.mq9.delivery import RecentMessages


def _stored(seq: int, size: int = 100, headers: bytes | None = None) -> MessageStored:
    return MessageStored("wq", seq, 2, 3, 0, headers, b"x" * size)


def test_a_backlog_within_half_the_budget_is_handed_out_from_memory():
    recent = RecentMessages(max_bytes=1 << 20)
    backlog = [_stored(seq) for seq in range(2_000)]  # 2,000 x (100 + 128) B: under half a MiB
    for stored in backlog:
        recent.keep(stored)
    assert all(recent.take(stored.seq) is stored for stored in backlog)
    assert recent.take(5) is None  # each once


def test_memory_stays_bounded_and_messages_never_handed_out_go_away():
    recent = RecentMessages(max_bytes=1 << 20)
    for seq in range(1_000):  # stored, then deleted before any hand-out: nobody takes them
        recent.keep(_stored(seq, headers=b"NATS/1.0\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n"))
    for seq in range(1_000, 200_000):  # live traffic, each handed out right after its store
        recent.keep(_stored(seq))
        assert recent.take(seq) is not None
    held = list(recent.young.values()) + list(recent.old.values())
    assert not any(stored.seq < 1_000 for stored in held)
    assert sum(len(s.payload) + len(s.headers or b"") + 128 for s in held) <= 1 << 20
