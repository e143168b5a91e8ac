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

The group record (G) is written once per batch if it changed. In-flight messages are
stored in pages (I keys): per group, one page for every 64 consecutive positions of
a Raft entry (`seq >> PAGE_SHIFT`), a map seq -> (member, level, deadline, deliveries)
in seq order, rewritten once at the end of a batch that changed it. A work queue hands
out and acknowledges hundreds of messages per batch, mostly stored close together: a
few page writes replace a put and a delete per message (RocksDB memtable inserts were
half of what a task cost the store). Pages stay small so a batch that acknowledges a
few messages does not rewrite hundreds of others.

In memory, a group's in-flight dict is kept in deadline order: every hand-out
and every +WPI gets the deadline `now + ack_wait`, `now` never goes back and `ack_wait`
is the mailbox's, so appending (a +WPI moves its entry to the end) keeps the order, and
a group loaded from its pages sorts them by (deadline, seq). The first entry is
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
from typing import Protocol

from cluster import keys, records
from cluster.commands import LEVELS
from cluster.effects import Effect, MessageAssigned
from cluster.keys import PAGE_SHIFT
from cluster.store import Txn
from cluster.tails import LevelTail

Page = dict[int, records.Inflight]  # seq -> entry, in seq order


class GroupState:
    """A group as apply works on it: the record plus its in-flight messages."""

    __slots__ = ("mail_id", "name", "rec", "inflight", "pages", "dirty", "load", "page_keys", "scheduled")

    def __init__(self, mail_id: str, name: str, rec: records.Group, pages: dict[int, Page]) -> None:
        self.mail_id = mail_id
        self.name = name
        self.page_keys = keys.inflight_pages(mail_id, name)  # + pack_u64(page): a page's key
        self.rec = rec
        self.pages = pages  # page (seq >> PAGE_SHIFT) -> its in-flight messages, in seq order
        self.dirty: dict[int, None] = {}  # pages changed in this batch, written at its end
        entries = sorted((item for page in pages.values() for item in page.items()),
                         key=lambda item: (item[1].deadline_ms, item[0]))
        self.inflight = dict(entries)  # seq -> entry in deadline order (module docstring)
        self.scheduled = bool(entries)  # the state's deadline heap has an entry for this group
        self.load: dict[str, int] = {member: 0 for member, _ in rec.members}
        for entry in self.inflight.values():
            if entry.member in self.load:
                self.load[entry.member] += 1

    def member_node(self, member: str) -> str | None:
        for m, node in self.rec.members:
            if m == member:
                return node
        return None


class GroupIndex(Protocol):
    """What queue groups need of the state machine's caches (`cluster.state.State`)."""

    def groups_of(self, txn: Txn, mail_id: str) -> dict[str, GroupState]: ...
    def last_seqs(self, txn: Txn, mail_id: str) -> list[int]: ...
    def tail(self, mail_id: str, level: int, last: list[int]) -> LevelTail: ...
    def schedule(self, group: GroupState, deadline_ms: int) -> None: ...


class Batch(Protocol):
    """The batch being applied, as queue groups see it (`cluster.state.Apply`).

    Groups own these two narrow interfaces, so this module needs nothing of the state
    machine's: state imports groups, never the other way round."""

    state: GroupIndex
    txn: Txn
    now: int
    effects: list[Effect]

    def touch(self, group: GroupState) -> None: ...
    def untouch(self, group: GroupState) -> None: ...
    def want_fill(self, mailbox: records.Mailbox, group: GroupState) -> None: ...


def first_deadline(group: GroupState) -> int:
    """When the group's first in-flight message is due (it has one)."""
    return next(iter(group.inflight.values())).deadline_ms


def load(txn: Txn, mail_id: str) -> dict[str, GroupState]:
    """Every group of a mailbox, from the store (committed state plus this batch)."""
    out: dict[str, GroupState] = {}
    prefix = keys.groups(mail_id)
    for key, value in txn.scan(prefix, keys.end_of(prefix)):
        name = key[len(prefix):].decode()
        pprefix = keys.inflight_pages(mail_id, name)
        pages = {keys.unpack_u64(pkey[-8:])[0]: records.decode_inflight_page(pvalue)
                 for pkey, pvalue in txn.scan(pprefix, keys.end_of(pprefix))}
        out[name] = GroupState(mail_id, name, records.decode_group(value), pages)
    return out


def write_pages(txn: Txn, group: GroupState) -> None:
    """Write the pages this batch changed (delete the ones it emptied)."""
    pages, prefix, pack_u64, encode = group.pages, group.page_keys, keys.pack_u64, records.encode
    for page in group.dirty:
        held = pages.get(page)
        if held:
            txn.put(prefix + pack_u64(page), encode(held))
        else:
            txn.delete(prefix + pack_u64(page))
    group.dirty.clear()


def migrate_legacy_keys(store) -> int:
    """Turn per-message F keys (written before pages) into I pages, in one write.

    The same logical state in another layout, so it needs no log position: a node does
    it when it opens its store (or installs a snapshot made by an older version).
    Returns how many entries moved."""
    lo, hi = keys.LEGACY_INFLIGHT_PREFIX, keys.end_of(keys.LEGACY_INFLIGHT_PREFIX)
    pages: dict[tuple[str, str, int], Page] = {}
    for key, value in store.scan(lo, hi):  # in (mail, group, seq) order: pages come out in seq order
        mail_id, name, seq = keys.split_inflight(key)
        pages.setdefault((mail_id, name, seq >> PAGE_SHIFT), {})[seq] = records.decode_inflight(value)
    if not pages:
        return 0
    txn = store.begin()
    for (mail_id, name, page), held in pages.items():
        txn.put(keys.inflight_pages(mail_id, name) + keys.pack_u64(page), records.encode(held))
    txn.delete_range(lo, hi)
    store.write(txn)
    return sum(len(held) for held in pages.values())


def join(ctx: Batch, mailbox: records.Mailbox, name: str, member: str, node: str, levels: int) -> None:
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


def leave(ctx: Batch, mailbox: records.Mailbox, name: str, member: str) -> bool:
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


def drop(ctx: Batch, group: GroupState) -> None:
    """Delete a group (its mailbox expired): its record and in-flight pages."""
    prefix = group.page_keys
    ctx.txn.delete_range(prefix, keys.end_of(prefix))
    ctx.txn.delete(keys.group(group.mail_id, group.name))
    ctx.untouch(group)


def release(group: GroupState, seq: int) -> records.Inflight | None:
    """Take `seq` out of the group's in-flight messages (its page is written at the batch's end)."""
    entry = group.inflight.pop(seq, None)
    if entry is not None:
        page = seq >> PAGE_SHIFT
        held = group.pages[page]
        del held[seq]
        if not held:
            del group.pages[page]
        group.dirty[page] = None
        if entry.member in group.load:
            group.load[entry.member] -= 1
    return entry


def take_back(ctx: Batch, group: GroupState, seq: int) -> None:
    """Move an in-flight message to the redelivery list (it keeps its delivery count)."""
    entry = release(group, seq)
    bisect.insort(group.rec.redeliver, (entry.level, seq, entry.delivery))
    ctx.touch(group)


def forget(ctx: Batch, group: GroupState, level: int, seq: int) -> bool:
    """A message left the mailbox: drop it from the group. True if a member got room."""
    if release(group, seq) is not None:
        ctx.touch(group)
        return True
    redeliver = group.rec.redeliver
    for i, (lvl, s, _) in enumerate(redeliver):
        if s == seq and lvl == level:
            del redeliver[i]
            ctx.touch(group)
            break
    return False


def extend(ctx: Batch, mailbox: records.Mailbox, group: GroupState, seq: int) -> bool:
    """+WPI: push the ack deadline of an in-flight message out by ack_wait."""
    entry = group.inflight.get(seq)
    if entry is None:
        return False
    entry = records.Inflight(entry.member, entry.level, ctx.now + mailbox.ack_wait_ms, entry.delivery)
    del group.inflight[seq]
    group.inflight[seq] = entry  # to the end: the latest deadline
    group.pages[seq >> PAGE_SHIFT][seq] = entry  # same place in its page
    group.dirty[seq >> PAGE_SHIFT] = None
    if not group.scheduled:
        ctx.state.schedule(group, entry.deadline_ms)
    ctx.touch(group)
    return True


def fill(ctx: Batch, mailbox: records.Mailbox, group: GroupState) -> None:
    """Hand out messages while some member has room and something is waiting.

    Runs for every batch with stores or acknowledgements, so it works in bulk: it counts
    the room left, takes that many candidates at once (`_candidates`), then deals them out
    in round-robin order to members with room, which is what handing them out one by one
    would do."""
    rec = group.rec
    members = rec.members
    n = len(members)
    if not n:
        return
    load = group.load
    limit = mailbox.max_in_flight
    room = [limit - load[member] for member, _ in members]
    free = sum(r for r in room if r > 0)
    if not free:
        return
    candidates = _candidates(ctx, group, free)
    if not candidates:
        return
    deadline = ctx.now + mailbox.ack_wait_ms
    inflight, pages, dirty, effects = group.inflight, group.pages, group.dirty, ctx.effects
    mail_id, name, Inflight = group.mail_id, group.name, records.Inflight
    position = rec.rr % n
    page = top = -1
    held: Page = {}
    for level, seq, delivered in candidates:
        while room[position] <= 0:  # the next member in round-robin order with room
            position = position + 1 if position + 1 < n else 0
        member = members[position][0]
        room[position] -= 1
        position = position + 1 if position + 1 < n else 0  # move on only when something was handed out
        entry = Inflight(member, level, deadline, delivered + 1)
        inflight[seq] = entry
        load[member] += 1
        if seq >> PAGE_SHIFT != page:  # its page: pages[seq >> PAGE_SHIFT][seq] = entry, in seq order
            page = seq >> PAGE_SHIFT
            held = pages.get(page)
            if held is None:
                held = pages[page] = {}
            top = next(reversed(held)) if held else -1
            dirty[page] = None
        held[seq] = entry
        if seq > top:
            top = seq
        else:  # a redelivery older than what its page holds: keep the page in seq order
            held = pages[page] = dict(sorted(held.items()))
            top = next(reversed(held))
        effects.append(MessageAssigned(mail_id, name, member, level, seq, delivered + 1))
    rec.rr = position
    if not group.scheduled:
        ctx.state.schedule(group, deadline)
    ctx.touch(group)


def _candidates(ctx: Batch, group: GroupState, want: int) -> list[tuple[int, int, int]]:
    """Up to `want` (level, seq, deliveries so far) this group should hand out next, in
    order: highest level first; within a level the redelivery list (older) before what is
    stored past the cursor. Takes them: the cursors move past what is returned."""
    rec = group.rec
    state = ctx.state
    mail_id = group.mail_id
    last = state.last_seqs(ctx.txn, mail_id)  # per level the highest seq ever stored
    redeliver = rec.redeliver
    out: list[tuple[int, int, int]] = []
    for level in range(LEVELS):
        if not rec.levels & (1 << level):
            continue
        while redeliver and redeliver[0][0] == level:
            out.append(redeliver.pop(0))
            if len(out) == want:
                return out
        cursor = rec.cursor[level]
        if cursor > last[level]:
            continue  # nothing was ever stored at this level past the cursor: no need to look
        tail = state.tail(mail_id, level, last)
        taken: list[int] = []
        if cursor < tail.known_from:  # older than the in-memory tail: ask RocksDB
            for key, _ in ctx.txn.scan(keys.message(mail_id, level, cursor),
                                       keys.message(mail_id, level, tail.known_from), want - len(out)):
                taken.append(keys.unpack_u64(key[-8:])[0])
            cursor = tail.known_from
        if len(out) + len(taken) < want:
            taken += tail.take(cursor, want - len(out) - len(taken))
        if not taken:
            continue
        out += [(level, seq, 0) for seq in taken]
        rec.cursor[level] = cursor = taken[-1] + 1
        siblings = state.groups_of(ctx.txn, mail_id)
        tail.trim(cursor if len(siblings) == 1 else _lowest_cursor(siblings, level))
        if len(out) == want:
            return out
    return out


def _lowest_cursor(groups: dict[str, GroupState], level: int) -> int:
    """The lowest cursor at `level` among a mailbox's groups: nobody asks for less."""
    bit = 1 << level
    return min((g.rec.cursor[level] for g in groups.values() if g.rec.levels & bit), default=0)
