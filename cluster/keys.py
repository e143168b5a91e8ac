"""The byte layout of every RocksDB key.

One leading byte names the table; integers are big-endian so byte order is numeric
order; a NUL ends every variable-length name (mail ids and group names never contain
one), so `Qabc\\0` never shares a prefix with `Qabc.d\\0`.

    M                                   meta: applied Raft index, log time (ms), applied-log digest
    B {mail_id}                         mailbox record
    P {mail_id}                         public mailbox index (for PUBLIC.LIST)
    Q {mail_id} 0 {level:1} {seq:8}     message; iterates in delivery order
    E {expires_ms:8} {mail_id}          mailbox expiry index: a range scan by time
    D {mail_id} 0 {dedup id}            Nats-Msg-Id -> seq
    G {mail_id} 0 {group}               queue-group record
    I {mail_id} 0 {group} 0 {page:8}    messages in flight to group members, a page per 64 positions of an entry
    N {node} 0 {mail_id} 0 {group} 0 {member}       group members by node
    S {node}                            a node of the cluster: its boot, client URL and name
    A {origin} 0 {batch number:8}       batches already applied (a resent batch is skipped)

A message's `seq` is `raft_index << 16 | position in batch`: unique in the cluster
forever, increasing in log order (FIFO within a level), and it tells which log entry
stored the message, which lets a reader skip what was stored after a given index.
"""

from __future__ import annotations

import struct

META = b"M"
_U64 = struct.Struct(">Q")
pack_u64 = _U64.pack
unpack_u64 = _U64.unpack
SEQ_SHIFT = 16
MAX_BATCH_COMMANDS = 1 << SEQ_SHIFT
PAGE_SHIFT = 6  # an in-flight page holds the messages of 64 consecutive positions of one entry
LEVELS = 4  # priority levels (commands.LEVELS; a test keeps them equal)


def seq_for(index: int, position: int) -> int:
    return (index << SEQ_SHIFT) | position


def index_of_seq(seq: int) -> int:
    return seq >> SEQ_SHIFT


def end_of(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def mailbox(mail_id: str) -> bytes:
    return b"B" + mail_id.encode()


def public(mail_id: str) -> bytes:
    return b"P" + mail_id.encode()


PUBLIC_PREFIX = b"P"


def messages(mail_id: str) -> bytes:
    return b"Q" + mail_id.encode() + b"\0"


def level_prefix(mail_id: str, level: int) -> bytes:
    return b"Q%s\0%c" % (mail_id.encode(), level)


_level_prefixes: dict[str, tuple[bytes, ...]] = {}  # mail_id -> Q prefix of each level


def message_prefixes(mail_id: str) -> tuple[bytes, ...]:
    """The Q prefix of each level of a mailbox (+ pack_u64(seq): a message key), made once."""
    prefixes = _level_prefixes.get(mail_id)
    if prefixes is None:
        if len(_level_prefixes) >= 65536:
            _level_prefixes.clear()
        prefixes = _level_prefixes[mail_id] = tuple(b"Q%s\0%c" % (mail_id.encode(), lv) for lv in range(LEVELS))
    return prefixes


def message(mail_id: str, level: int, seq: int) -> bytes:
    prefixes = _level_prefixes.get(mail_id) or message_prefixes(mail_id)
    return prefixes[level] + pack_u64(seq)


def split_message(key: bytes) -> tuple[int, int]:
    """(level, seq) of a message key."""
    return key[-9], unpack_u64(key[-8:])[0]


def expiry(expires_ms: int, mail_id: str) -> bytes:
    return b"E" + pack_u64(expires_ms) + mail_id.encode()


EXPIRY_PREFIX = b"E"


def split_expiry(key: bytes) -> tuple[int, str]:
    return unpack_u64(key[1:9])[0], key[9:].decode()


def dedup(mail_id: str, dedup_id: str) -> bytes:
    return b"D" + mail_id.encode() + b"\0" + dedup_id.encode()


def dedups(mail_id: str) -> bytes:
    return b"D" + mail_id.encode() + b"\0"


def group(mail_id: str, name: str) -> bytes:
    return b"G" + mail_id.encode() + b"\0" + name.encode()


def groups(mail_id: str) -> bytes:
    return b"G" + mail_id.encode() + b"\0"


INFLIGHT_PREFIX = b"I"
LEGACY_INFLIGHT_PREFIX = b"F"  # one key per in-flight message (before pages): migrated at start


def inflight_pages(mail_id: str, name: str | None = None) -> bytes:
    """In-flight pages of a mailbox, or of one group (then + pack_u64(page) is one page's key).

    A page holds the group's in-flight messages among 64 consecutive ones that one Raft
    entry stored: page = `seq >> PAGE_SHIFT`. A work queue hands out and acknowledges
    hundreds of messages per batch, mostly stored close together, so it rewrites a few
    small pages per batch instead of putting and deleting a key per message."""
    base = INFLIGHT_PREFIX + mail_id.encode() + b"\0"
    return base if name is None else base + name.encode() + b"\0"


def member_index(node: str, mail_id: str, name: str, member: str) -> bytes:
    """N {node} 0 {mail_id} 0 {group} 0 {member}: a node's group members, to drop them together."""
    return b"N" + node.encode() + b"\0" + mail_id.encode() + b"\0" + name.encode() + b"\0" + member.encode()


def node_members(node: str) -> bytes:
    return b"N" + node.encode() + b"\0"


def split_member_index(key: bytes) -> tuple[str, str, str, str]:
    node, mail_id, name, member = key[1:].split(b"\0", 3)
    return node.decode(), mail_id.decode(), name.decode(), member.decode()


NODES_PREFIX = b"S"


def node(node_id: str) -> bytes:
    return b"S" + node_id.encode()


def split_inflight(key: bytes) -> tuple[str, str, int]:
    """(mail_id, group, page) of an in-flight page key (or seq of a legacy per-message key)."""
    mail_id, _, name = key[1:-9].partition(b"\0")
    return mail_id.decode(), name.decode(), unpack_u64(key[-8:])[0]


def applied_batch(origin: str, number: int) -> bytes:
    return b"A" + origin.encode() + b"\0" + pack_u64(number)


def applied_batches(origin: str) -> bytes:
    return b"A" + origin.encode() + b"\0"
