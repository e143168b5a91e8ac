"""Every mutation of the replicated state, as data with stable numbers.

A command is a frozen msgspec Struct encoded as a MessagePack array whose first element
is the command's integer tag. Tags and field order are append-only: the Raft log and
snapshots outlive any version of this file, so a tag is never reused or renumbered and
new fields go at the end with defaults. `tests/test_commands.py` pins the bytes.

Commands are grouped into a `Batch` (one Raft entry): the batch carries the time the
submitting node stamped (apply takes time only from here, never from a clock), the
submitting node's incarnation and a batch number, so that node can match results to
the clients waiting for them.
"""

from __future__ import annotations

import msgspec

# Priority levels, highest first. A message keeps the word its sender used.
WORDS = ("critical", "urgent", "high", "normal", "low")
WORD_LEVEL = {"critical": 0, "urgent": 1, "high": 1, "normal": 2, "low": 3}
LEVELS = 4
LEVEL_NAMES = ("critical", "urgent", "normal", "low")  # each level's name where counts are shown (INFO, /mailboxz)
ALL_LEVELS = (1 << LEVELS) - 1  # a bitmask over levels
WORD_INDEX = {w: i for i, w in enumerate(WORDS)}
WORD_INDEX_LEVEL = tuple(WORD_LEVEL[w] for w in WORDS)
NORMAL = WORD_INDEX["normal"]

# Acknowledgement kinds
ACK, NAK, WPI, TERM = 0, 1, 2, 3


class CreateMailbox(msgspec.Struct, tag=1, array_like=True, frozen=True):
    mail_id: str
    ttl_s: int
    public: bool
    name: str
    desc: str
    ack_wait_ms: int
    max_in_flight: int
    # appended: who created it (with users configured) and who else may read it; entries
    # written before these fields existed decode with the defaults
    owner: str = ""
    readers: tuple[str, ...] = ()


class StoreMessage(msgspec.Struct, tag=2, array_like=True, frozen=True):
    mail_id: str
    word: int  # index into WORDS
    headers: bytes | None  # the sender's NATS/1.0 block, kept as sent
    payload: bytes
    dedup_id: str | None = None  # the Nats-Msg-Id header


class Ack(msgspec.Struct, tag=3, array_like=True, frozen=True):
    mail_id: str
    seq: int
    kind: int  # ACK, NAK, WPI or TERM
    group: str | None = None  # the group the acked delivery came from


class DeleteMessage(msgspec.Struct, tag=4, array_like=True, frozen=True):
    mail_id: str
    seq: int


class GroupJoin(msgspec.Struct, tag=5, array_like=True, frozen=True):
    mail_id: str
    group: str  # queue name, plus the level filter when it is not all levels
    member: str  # node/boot/cid/sid: unique across the cluster and restarts
    node: str
    levels: int = ALL_LEVELS


class GroupLeave(msgspec.Struct, tag=6, array_like=True, frozen=True):
    mail_id: str
    group: str
    member: str


class Tick(msgspec.Struct, tag=7, array_like=True, frozen=True):
    """Nothing but the batch's time: lets TTLs and ack deadlines fire on an idle cluster."""


class NodeRestarted(msgspec.Struct, tag=8, array_like=True, frozen=True):
    """A node came (back) up as `boot`: members it had under other boots are gone."""

    node: str
    boot: str
    client_url: str = ""  # where its NATS clients connect (for INFO connect_urls)
    name: str = ""


class NodeDown(msgspec.Struct, tag=9, array_like=True, frozen=True):
    """The leader saw `node` leave the cluster: its members are gone."""

    node: str


Command = CreateMailbox | StoreMessage | Ack | DeleteMessage | GroupJoin | GroupLeave | Tick | NodeRestarted | NodeDown


class Batch(msgspec.Struct, array_like=True, frozen=True):
    time_ms: int
    origin: str  # the submitting node's boot id
    number: int  # batch number within that boot
    commands: list[Command]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(blob: bytes) -> Batch:
    """Decode a Raft entry; raises msgspec.DecodeError on bytes that are not a Batch."""
    return _decoder.decode(blob)


def encoded_size(command: Command) -> int:
    """Roughly what a command adds to a batch, for the batcher's byte limit."""
    if type(command) is StoreMessage:
        return len(command.payload) + len(command.headers or b"") + len(command.mail_id) + 16
    return 64
