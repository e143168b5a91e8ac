"""The values stored under each key (see keys.py), as msgspec MessagePack arrays.

Like commands, records are append-only in shape: new fields go at the end with a
default, so a node reads what an older version wrote (in its RocksDB or a snapshot).
"""

from __future__ import annotations

import msgspec


class Mailbox(msgspec.Struct, array_like=True):
    """B {mail_id}: a mailbox (also carried by the created/expired effects)."""

    mail_id: str
    public: bool
    name: str
    desc: str
    ttl_s: int
    created_ms: int
    expires_ms: int  # 0: never
    ack_wait_ms: int
    max_in_flight: int
    created_index: int
    owner: str = ""  # the user who created it ("" with no users configured: anyone may read it)
    readers: tuple[str, ...] = ()  # other users who may read it


class Message(msgspec.Struct, array_like=True, gc=False):
    """Q ...: one stored message. `word` indexes commands.WORDS."""

    word: int
    ts_ms: int
    headers: bytes | None
    payload: bytes


class Group(msgspec.Struct, array_like=True):
    """G ...: a queue group of a mailbox. In-flight messages live in I pages."""

    levels: int  # bitmask of the levels this group takes
    members: list[tuple[str, str]]  # (member, node), in join order
    cursor: list[int]  # per level: the next seq not yet handed out
    redeliver: list[tuple[int, int, int]]  # (level, seq, deliveries so far), sorted
    rr: int = 0  # round-robin position among members


class Inflight(msgspec.Struct, array_like=True, gc=False):
    """A message handed to a member, waiting for its ack: I pages map seq -> Inflight."""

    member: str
    level: int
    deadline_ms: int
    delivery: int


class Node(msgspec.Struct, array_like=True):
    """S {node}: a member of the cluster as it last announced itself."""

    node: str  # its Raft address: the cluster-wide id
    boot: str
    client_url: str
    name: str


_enc = msgspec.msgpack.Encoder()
encode = _enc.encode
decode_mailbox = msgspec.msgpack.Decoder(Mailbox).decode
decode_message = msgspec.msgpack.Decoder(Message).decode
decode_group = msgspec.msgpack.Decoder(Group).decode
decode_inflight = msgspec.msgpack.Decoder(Inflight).decode  # a legacy per-message F value
decode_inflight_page = msgspec.msgpack.Decoder(dict[int, Inflight]).decode
decode_node = msgspec.msgpack.Decoder(Node).decode
