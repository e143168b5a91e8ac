"""Queue groups inside apply: who gets which message, and what happens when they don't ack.

A group hands each stored message of its mailbox to exactly one member. Per level it
keeps a cursor (the next sequence number not yet handed out) and a short, sorted
redelivery list (messages taken back from a member that NAKed, timed out or left).
`fill` repeats: take the first member in round-robin order that holds fewer than
`max_in_flight` messages, give it the next candidate (highest level first; within a
level the redelivery list, whose entries are older, before the cursor), until no
member has room or nothing is left. It runs once at the end of a batch for every group
that may have gained room or work in it (`Apply.want_fill`). Every choice depends only on the stored state
and the batch, so every node makes the same one.

The group record (G) is written once per batch if it changed; in-flight messages are
F keys. In memory, a group's in-flight dict is kept in deadline order: every hand-out
and every +WPI gets the deadline `now + ack_wait`, `now` never goes back and `ack_wait`
is the mailbox's, so appending (a +WPI moves its entry to the end) keeps the order, and
a group loaded from the F keys sorts them by (deadline, seq). The first entry is
therefore the group's next deadline, and the state's heap needs one entry per group
(`scheduled`), not one per message (see `State._retire_deadlines`); a range scan over an
on-disk deadline index would wade through the tombstones every acknowledgement leaves
behind.
A group outlives its members (like a JetStream durable consumer): when the last one
leaves, its cursors and redelivery list stay, so the next member continues where the
group was and redeliveries keep counting. It goes away with its mailbox.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from cluster import keys, records
from cluster.commands import LEVELS
from cluster.effects import MessageAssigned

if TYPE_CHECKING:
    from cluster.state import Apply


class GroupState:
    """A group as apply works on it: the record plus its in-flight messages."""

    __slots__ = ("mail_id", "name", "rec", "inflight", "load", "fkeys", "scheduled")

    def __init__(self, mail_id: str, name: str, rec: records.Group, inflight: dict[int, records.Inflight]) -> None:
        self.mail_id = mail_id
        self.name = name
        self.fkeys = keys.inflights(mail_id, name)  # + seq: the F key of an in-flight message
        self.rec = rec
        self.inflight = inflight  # in deadline order (module docstring)
        self.scheduled = bool(inflight)  # the state's deadline heap has an entry for this group
        self.load: dict[str, int] = {member: 0 for member, _ in rec.members}
        for entry in inflight.values():
            if entry.member in self.load:
                self.load[entry.member] += 1

    def member_node(self, member: str) -> str | None:
        for m, node in self.rec.members:
            if m == member:
                return node
        return None


def first_deadline(group: GroupState) -> int:
    """When the group's first in-flight message is due (it has one)."""
    return next(iter(group.inflight.values())).deadline_ms


def load(txn, mail_id: str) -> dict[str, GroupState]:
    """Every group of a mailbox, from the store (committed state plus this batch)."""
    out: dict[str, GroupState] = {}
    prefix = keys.groups(mail_id)
    for key, value in txn.scan(prefix, keys.end_of(prefix)):
        name = key[len(prefix):].decode()
        fprefix = keys.inflights(mail_id, name)
        entries = [(records.decode_inflight(fvalue), keys.unpack_u64(fkey[-8:])[0])
                   for fkey, fvalue in txn.scan(fprefix, keys.end_of(fprefix))]
        entries.sort(key=lambda e: (e[0].deadline_ms, e[1]))
        inflight = {seq: entry for entry, seq in entries}
        out[name] = GroupState(mail_id, name, records.decode_group(value), inflight)
    return out


def join(ctx: "Apply", mailbox: records.Mailbox, name: str, member: str, node: str, levels: int) -> None:
    groups = ctx.state.groups_of(ctx.txn, mailbox.mail_id)
    group = groups.get(name)
    if group is None:
        rec = records.Group(levels=levels, members=[], cursor=[0] * LEVELS, redeliver=[])
        group = groups[name] = GroupState(mailbox.mail_id, name, rec, {})
        ordered = sorted(groups.items())  # name order, as a node that reloads reads them
        groups.clear()
        groups.update(ordered)
    if member not in group.load:
        group.rec.members.append((member, node))
        group.load[member] = 0
        ctx.txn.put(keys.member_index(node, mailbox.mail_id, name, member), b"")
    ctx.touch(group)
    ctx.want_fill(mailbox, group)


def leave(ctx: "Apply", mailbox: records.Mailbox, name: str, member: str) -> bool:
    """Remove a member; its in-flight messages go back for redelivery. False if unknown."""
    groups = ctx.state.groups_of(ctx.txn, mailbox.mail_id)
    group = groups.get(name)
    if group is None or member not in group.load:
        return False
    node = group.member_node(member) or ""
    group.rec.members = [(m, n) for m, n in group.rec.members if m != member]
    del group.load[member]
    ctx.txn.delete(keys.member_index(node, mailbox.mail_id, name, member))
    for seq in sorted(s for s, e in group.inflight.items() if e.member == member):
        take_back(ctx, group, seq)
    ctx.touch(group)  # a group outlives its members, like a durable consumer: its position stays
    ctx.want_fill(mailbox, group)
    return True


def drop(ctx: "Apply", group: GroupState) -> None:
    """Delete a group (its mailbox expired): its record and in-flight entries."""
    prefix = keys.inflights(group.mail_id, group.name)
    ctx.txn.delete_range(prefix, keys.end_of(prefix))
    ctx.txn.delete(keys.group(group.mail_id, group.name))
    ctx.untouch(group)


def take_back(ctx: "Apply", group: GroupState, seq: int) -> None:
    """Move an in-flight message to the redelivery list (it keeps its delivery count)."""
    entry = group.inflight.pop(seq)
    if entry.member in group.load:
        group.load[entry.member] -= 1
    ctx.txn.delete(group.fkeys + keys.pack_u64(seq))
    bisect.insort(group.rec.redeliver, (entry.level, seq, entry.delivery))
    ctx.touch(group)


def forget(ctx: "Apply", group: GroupState, level: int, seq: int) -> bool:
    """A message left the mailbox: drop it from the group. True if a member got room."""
    entry = group.inflight.pop(seq, None)
    if entry is not None:
        if entry.member in group.load:
            group.load[entry.member] -= 1
        ctx.txn.delete(group.fkeys + keys.pack_u64(seq))
        ctx.touch(group)
        return True
    redeliver = group.rec.redeliver
    for i, (lvl, s, _) in enumerate(redeliver):
        if s == seq and lvl == level:
            del redeliver[i]
            ctx.touch(group)
            break
    return False


def extend(ctx: "Apply", mailbox: records.Mailbox, group: GroupState, seq: int) -> bool:
    """+WPI: push the ack deadline of an in-flight message out by ack_wait."""
    entry = group.inflight.get(seq)
    if entry is None:
        return False
    entry = records.Inflight(entry.member, entry.level, ctx.now + mailbox.ack_wait_ms, entry.delivery)
    del group.inflight[seq]
    group.inflight[seq] = entry  # to the end: the latest deadline
    _write_inflight(ctx, group, seq, entry)
    return True


def fill(ctx: "Apply", mailbox: records.Mailbox, group: GroupState) -> None:
    """Hand out messages while some member has room and something is waiting.

    Runs for every batch with stores or acknowledgements, so it is written for speed: the
    member search and the F key write are inline, and a room counter ends it without a
    search once every member is full."""
    rec = group.rec
    members = rec.members
    n = len(members)
    if not n:
        return
    load = group.load
    limit = mailbox.max_in_flight
    free = 0  # room left over all members: no member search when it is 0
    for held in load.values():
        if held < limit:
            free += limit - held
    deadline = ctx.now + mailbox.ack_wait_ms
    handed = False
    last = ctx.state.last_seqs(ctx.txn, group.mail_id)
    put, fkeys, pack_u64, encode, effects = ctx.txn.put, group.fkeys, keys.pack_u64, records.encode, ctx.effects
    while free:
        rr = rec.rr
        for k in range(n):  # the next member in round-robin order with room for one more
            position = (rr + k) % n
            member = members[position][0]
            if load[member] < limit:
                break
        else:
            break
        candidate = _next_candidate(ctx, group, last)
        if candidate is None:
            break
        rec.rr = (position + 1) % n  # move on only when something was handed out
        level, seq, delivered = candidate
        entry = records.Inflight(member, level, deadline, delivered + 1)
        group.inflight[seq] = entry
        load[member] += 1
        free -= 1
        put(fkeys + pack_u64(seq), encode(entry))  # _write_inflight, inline
        effects.append(MessageAssigned(group.mail_id, group.name, member, level, seq, delivered + 1))
        handed = True
    if handed:
        if not group.scheduled:
            ctx.state.schedule(group, deadline)
        ctx.touch(group)


def _write_inflight(ctx: "Apply", group: GroupState, seq: int, entry: records.Inflight) -> None:
    ctx.txn.put(group.fkeys + keys.pack_u64(seq), records.encode(entry))
    if not group.scheduled:
        ctx.state.schedule(group, entry.deadline_ms)


def _next_candidate(ctx: "Apply", group: GroupState, last: list[int]) -> tuple[int, int, int] | None:
    """(level, seq, deliveries so far) of the next message this group should hand out;
    `last`: the mailbox's highest stored seq per level (State.last_seqs)."""
    rec = group.rec
    state = ctx.state
    for level in range(LEVELS):
        if not rec.levels & (1 << level):
            continue
        redeliver = rec.redeliver
        if redeliver and redeliver[0][0] == level:
            return redeliver.pop(0)
        cursor = rec.cursor[level]
        if cursor > last[level]:
            continue  # nothing was ever stored at this level past the cursor: no need to look
        tail = state.tail(group.mail_id, level, last)
        seq = None
        if cursor < tail.known_from:  # older than the in-memory tail: ask RocksDB
            hit = ctx.txn.first(keys.message(group.mail_id, level, cursor),
                                keys.message(group.mail_id, level, tail.known_from))
            if hit is not None:
                seq = keys.unpack_u64(hit[0][-8:])[0]
            cursor = tail.known_from
        if seq is None:
            seq = tail.first_from(cursor)
            if seq is None:
                continue
        rec.cursor[level] = seq + 1
        siblings = state.groups_of(ctx.txn, group.mail_id)
        tail.trim(seq + 1 if len(siblings) == 1 else _lowest_cursor(siblings, level))
        return level, seq, 0
    return None


def _lowest_cursor(groups: dict[str, GroupState], level: int) -> int:
    """The lowest cursor at `level` among a mailbox's groups: nobody asks for less."""
    bit = 1 << level
    return min((g.rec.cursor[level] for g in groups.values() if g.rec.levels & bit), default=0)
