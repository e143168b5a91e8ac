"""Deterministic apply: (stored state, batch, index) -> new state, results, effects.

`State.apply_batch` is called for every committed Raft entry on every node, in log
order. It skips entries at or below the applied index stored in RocksDB (a replay after
restart), takes time only from the batch (`now = max(previous log time, batch time)`,
so log time never goes backwards), first retires what is due at `now` (expired
mailboxes, ack deadlines that passed), then runs each command's handler, and commits
everything in one WriteBatch with the new applied index.

A busy work queue's entries are hundreds of stores to one mailbox and of acks by its
group's members, so those are taken in runs (`_store_run`, `_ack_run`): what is the same
for the whole run is looked up once. A run gives exactly the results, effects and state
of taking its commands one by one; an ack that is not a member's ACK of a message it
holds goes to the one-command handler `_ack`.

Rules that keep every node identical: no clock, no randomness, no iteration over
unordered sets, no exceptions out of apply. Domain errors are `Failure` results; a
handler that raises anyway (a bug) is logged and answered with a 500 result, and the
same bug makes the same choice on every node.

Caches (mailbox records, loaded groups) are pure functions of the store and are
dropped whenever the store is swapped for a snapshot.
"""

from __future__ import annotations

import heapq
import logging
import zlib
from typing import Callable

from cluster import commands as c
from cluster import groups, keys, records
from cluster.tails import TAIL_MAX, LevelTail
from cluster.effects import (
    DONE,
    Created,
    Effect,
    Failure,
    MailboxCreated,
    MailboxExpired,
    MembersDropped,
    MessageStored,
    NodeAnnounced,
    Result,
    Stored,
    not_found,
)
from cluster.store import Store, Txn

log = logging.getLogger("mq9.state")

EXPIRE_PER_BATCH = 256  # mailboxes / ack deadlines retired per batch at most; the rest next time
BATCH_MEMORY = 65536  # how many of a node's recent batch numbers are remembered for duplicates
MAILBOX_CACHE_MAX = 65536
NEVER = 1 << 62


class Apply:
    """The context of one batch being applied.

    Queue groups are filled once, at the end of the batch (`want_fill`, `finish_groups`):
    a batch of 64 acknowledgements then hands out 64 messages in one pass instead of
    searching for room 64 times. Nothing in a batch depends on a hand-out made earlier
    in the same batch (a member cannot acknowledge what it has not been sent), and the
    order of the pass (groups in the order they first asked) is the same on every node.
    """

    __slots__ = ("state", "txn", "now", "index", "effects", "_touched", "_to_fill")

    def __init__(self, state: "State", txn: Txn, now: int, index: int) -> None:
        self.state = state
        self.txn = txn
        self.now = now
        self.index = index
        self.effects: list[Effect] = []
        self._touched: dict[groups.GroupState, None] = {}  # groups whose record changed
        self._to_fill: dict[groups.GroupState, records.Mailbox] = {}

    def touch(self, group: groups.GroupState) -> None:
        self._touched[group] = None

    def want_fill(self, mailbox: records.Mailbox, group: groups.GroupState) -> None:
        """`group` may have room and something to hand out: fill it at the batch's end."""
        self._to_fill[group] = mailbox

    def untouch(self, group: groups.GroupState) -> None:
        self._touched.pop(group, None)
        self._to_fill.pop(group, None)

    def finish_groups(self) -> None:
        """Fill the groups that asked, then write every changed group record once."""
        for group, mailbox in self._to_fill.items():
            try:
                groups.fill(self, mailbox, group)
            except Exception:  # a bug: as for a handler, every node hits it; the batch still commits
                log.exception("apply: filling group %s of %s at index %d failed", group.name, group.mail_id, self.index)
        for group in self._touched:
            self.txn.put(keys.group(group.mail_id, group.name), records.encode(group.rec))
            if group.dirty:
                groups.write_pages(self.txn, group)


class State:
    """The replicated state machine over one Store."""

    def __init__(self, store: Store, tail_max: int = TAIL_MAX, expire_per_batch: int = EXPIRE_PER_BATCH) -> None:
        self.store = store
        self.tail_max = tail_max  # per level, in memory (tails.py); 0: always ask RocksDB
        self.expire_per_batch = expire_per_batch  # part of the log's meaning: the same on every node
        self._mailboxes: dict[str, records.Mailbox | None] = {}
        self._groups: dict[str, dict[str, groups.GroupState]] = {}
        self._tails: dict[str, list[LevelTail | None]] = {}  # mailboxes with groups (tails.py)
        self.reset()

    def reset(self) -> None:
        """(Re)load from the store: at start, and when a snapshot replaced it. Caches go.

        Ack deadlines: a heap of (deadline, mail, group) with an entry per group that has
        messages in flight, at or before its first deadline (groups.py keeps each group's
        in-flight dict in deadline order); rebuilt here from the in-flight pages. An entry
        made early by an ack or a +WPI is moved on when it comes up (`_retire_deadlines`).
        The next mailbox expiry is remembered so idle batches skip the expiry scan.
        """
        moved = groups.migrate_legacy_keys(self.store)
        if moved:
            log.info("Moved %d in-flight entries from per-message keys into pages", moved)
        self.applied_index, self.now_ms, self.digest = self.store.applied()
        self._mailboxes.clear()
        self._groups.clear()
        self._tails.clear()
        self._last_seq: dict[str, list[int]] = {}
        first: dict[tuple[str, str], int] = {}
        for key, value in self.store.scan(keys.INFLIGHT_PREFIX, keys.end_of(keys.INFLIGHT_PREFIX)):
            mail_id, name, _ = keys.split_inflight(key)
            deadline = min(entry.deadline_ms for entry in records.decode_inflight_page(value).values())
            if deadline < first.get((mail_id, name), NEVER):
                first[(mail_id, name)] = deadline
        self._deadlines: list[tuple[int, str, str]] = [(d, m, n) for (m, n), d in first.items()]
        heapq.heapify(self._deadlines)
        first = self.store.first(keys.EXPIRY_PREFIX, keys.end_of(keys.EXPIRY_PREFIX))
        self._next_expiry = keys.split_expiry(first[0])[0] if first else NEVER
        self.next_due_ms = self._due()

    def _due(self) -> int:
        """When something is next due (a TTL or an ack deadline), in log time."""
        return min(self._next_expiry, self._deadlines[0][0] if self._deadlines else NEVER)

    def schedule(self, group: groups.GroupState, deadline_ms: int) -> None:
        """`group` has messages in flight again, the first due at `deadline_ms`."""
        heapq.heappush(self._deadlines, (deadline_ms, group.mail_id, group.name))
        group.scheduled = True

    # ---- apply ---------------------------------------------------------------------

    def apply_batch(self, batch: c.Batch, index: int, entry_crc: int = 0) -> tuple[list[Result], list[Effect]] | None:
        """Apply one log entry. Returns None for an entry already applied before a restart.

        A batch whose (origin, number) was applied before is a resend (its node retried
        after a leader change) and changes nothing: so resending is always safe.

        `entry_crc` (the CRC of the entry's bytes) is folded into `digest`, a fingerprint of
        the whole applied log: two nodes at the same applied index must have the same one.
        """
        if index <= self.applied_index:
            return None
        now = max(self.now_ms, batch.time_ms)
        ctx = Apply(self, self.store.begin(), now, index)
        seen = keys.applied_batch(batch.origin, batch.number)
        if ctx.txn.get(seen) is not None:  # a resend of a batch that already committed: skip it
            self._finish(ctx, index, now, entry_crc)
            return [], []
        ctx.txn.put(seen, b"")
        if batch.number % 1024 == 0 and batch.number > BATCH_MEMORY:
            prefix = keys.applied_batches(batch.origin)
            ctx.txn.delete_range(prefix, keys.applied_batch(batch.origin, batch.number - BATCH_MEMORY))
        self._retire_due(ctx)
        results: list[Result] = []
        commands = batch.commands[: keys.MAX_BATCH_COMMANDS]
        position, count = 0, len(commands)
        while position < count:  # one result per command: len(results) == position
            command = commands[position]
            kind = type(command)
            try:
                run = _RUNS.get(kind)
                if run is not None:  # stores and acks, with those of their kind right behind them
                    position = run(self, ctx, commands, position, results)
                    continue
                handler = _HANDLERS.get(kind)
                results.append(handler(self, ctx, command, position) if handler else Failure(400, "unknown command"))
            except Exception:  # a bug; every node hits the same one, so they stay identical
                position = len(results)  # the command that raised
                log.exception("apply: %s at index %d failed", type(commands[position]).__name__, index)
                results.append(Failure(500, "internal error"))
            position += 1
        ctx.finish_groups()
        self._finish(ctx, index, now, entry_crc)
        return results, ctx.effects

    def _finish(self, ctx: Apply, index: int, now: int, entry_crc: int) -> None:
        digest = zlib.crc32(keys.pack_u64(index) + keys.pack_u64(entry_crc), self.digest & 0xFFFFFFFF)
        self.store.commit(ctx.txn, index, now, digest)
        self.applied_index = index
        self.now_ms = now
        self.digest = digest
        self.next_due_ms = self._due()

    # ---- reads used by handlers ------------------------------------------------------

    def mailbox(self, txn: Txn, mail_id: str) -> records.Mailbox | None:
        if mail_id in self._mailboxes:
            return self._mailboxes[mail_id]
        raw = txn.get(keys.mailbox(mail_id))
        mb = records.decode_mailbox(raw) if raw is not None else None
        if len(self._mailboxes) >= MAILBOX_CACHE_MAX:
            self._mailboxes.clear()
        self._mailboxes[mail_id] = mb
        return mb

    def last_seqs(self, txn: Txn, mail_id: str) -> list[int]:
        """Per level, the highest seq ever stored in the mailbox (-1: none): a cursor past
        it means the level holds nothing new, so a queue group need not search it."""
        found = self._last_seq.get(mail_id)
        if found is None:
            found = [-1] * c.LEVELS
            for level in range(c.LEVELS):
                key = self.store.last(keys.level_prefix(mail_id, level))
                if key is not None:
                    found[level] = keys.unpack_u64(key[-8:])[0]
            self._last_seq[mail_id] = found
        return found

    def tail(self, mail_id: str, level: int, last: list[int]) -> LevelTail:
        """The in-memory tail of a level (see tails.py), made on first use: exact from the
        message after the last one stored so far."""
        tails = self._tails.get(mail_id)
        if tails is None:
            tails = self._tails[mail_id] = [None] * c.LEVELS
        tail = tails[level]
        if tail is None:
            tail = tails[level] = LevelTail(last[level] + 1, self.tail_max)
        return tail

    def groups_of(self, txn: Txn, mail_id: str) -> dict[str, groups.GroupState]:
        found = self._groups.get(mail_id)
        if found is None:
            found = self._groups[mail_id] = groups.load(txn, mail_id)
        return found

    def _live(self, ctx: Apply, mail_id: str) -> records.Mailbox | None:
        """The mailbox if it exists and has not expired by the batch's time."""
        mb = self.mailbox(ctx.txn, mail_id)
        if mb is not None and mb.expires_ms and mb.expires_ms <= ctx.now:
            self._expire(ctx, mb)
            return None
        return mb

    # ---- time ------------------------------------------------------------------------

    def _retire_due(self, ctx: Apply) -> None:
        txn, now = ctx.txn, ctx.now
        if now >= self._next_expiry:
            due = keys.EXPIRY_PREFIX + keys.pack_u64(now + 1)
            for key, _ in list(txn.scan(keys.EXPIRY_PREFIX, due, self.expire_per_batch)):
                _, mail_id = keys.split_expiry(key)
                mb = self.mailbox(txn, mail_id)
                if mb is not None:
                    self._expire(ctx, mb)
                else:
                    txn.delete(key)
            first = txn.first(keys.EXPIRY_PREFIX, keys.end_of(keys.EXPIRY_PREFIX))
            self._next_expiry = keys.split_expiry(first[0])[0] if first else NEVER
        if self._deadlines and self._deadlines[0][0] <= now:
            self._retire_deadlines(ctx)

    def _retire_deadlines(self, ctx: Apply) -> None:
        """Take back what was not acknowledged in time, the same on every node.

        A heap entry may be earlier than its group's first deadline (the first message was
        acknowledged since), and a node that reloaded has exact entries where one that did
        not has early ones. So the heap only says which groups to look at: the groups
        actually due are taken in (first deadline, mail, group) order, and within a group
        the due messages in (deadline, seq) order, up to `expire_per_batch` in all."""
        txn, now, heap = ctx.txn, ctx.now, self._deadlines
        due: dict[groups.GroupState, tuple[tuple[int, str, str], records.Mailbox]] = {}
        while heap and heap[0][0] <= now:
            _, mail_id, name = heapq.heappop(heap)
            mb = self.mailbox(txn, mail_id)
            group = self.groups_of(txn, mail_id).get(name) if mb is not None else None
            if group is None or group in due:
                continue  # gone, or a second entry for a group already found due
            if not group.inflight:
                group.scheduled = False
                continue
            first = groups.first_deadline(group)
            if first > now:
                heapq.heappush(heap, (first, mail_id, name))  # an early entry: move it on
                continue
            due[group] = ((first, mail_id, name), mb)
        budget = self.expire_per_batch
        for group in sorted(due, key=lambda g: due[g][0]):
            if budget > 0:
                late = []
                for seq, entry in group.inflight.items():  # in deadline order
                    if entry.deadline_ms > now or (len(late) >= budget and entry.deadline_ms > late[-1][0]):
                        break  # not late, or later than every message this budget can take
                    late.append((entry.deadline_ms, seq))
                late.sort()
                for _, seq in late[:budget]:
                    groups.take_back(ctx, group, seq)
                budget -= min(budget, len(late))
                ctx.want_fill(due[group][1], group)
            if group.inflight:
                heapq.heappush(heap, (groups.first_deadline(group), group.mail_id, group.name))
            else:
                group.scheduled = False

    def _expire(self, ctx: Apply, mb: records.Mailbox) -> None:
        """Remove a mailbox and everything in it."""
        txn, mail_id = ctx.txn, mb.mail_id
        for group in list(self.groups_of(txn, mail_id).values()):
            for member, node in group.rec.members:
                txn.delete(keys.member_index(node, mail_id, group.name, member))
            groups.drop(ctx, group)
        self._groups.pop(mail_id, None)
        self._tails.pop(mail_id, None)
        self._last_seq.pop(mail_id, None)
        for prefix in (keys.messages(mail_id), keys.dedups(mail_id), keys.groups(mail_id), keys.inflight_pages(mail_id)):
            txn.delete_range(prefix, keys.end_of(prefix))
        txn.delete(keys.mailbox(mail_id))
        txn.delete(keys.public(mail_id))
        if mb.expires_ms:
            txn.delete(keys.expiry(mb.expires_ms, mail_id))
        self._mailboxes[mail_id] = None
        ctx.effects.append(MailboxExpired(mb))

    # ---- handlers --------------------------------------------------------------------

    def _create(self, ctx: Apply, cmd: c.CreateMailbox, position: int) -> Result:
        if cmd.ttl_s < 0 or cmd.ack_wait_ms <= 0 or cmd.max_in_flight <= 0 or not cmd.mail_id:
            return Failure(400, "invalid mailbox settings")
        mb = self._live(ctx, cmd.mail_id)
        if mb is not None:  # idempotent, and the TTL is not reset (seed semantics)
            return Created(mb.mail_id, False, mb.ttl_s, mb.expires_ms or None)
        expires = ctx.now + cmd.ttl_s * 1000 if cmd.ttl_s else 0
        mb = records.Mailbox(
            cmd.mail_id, cmd.public, cmd.name, cmd.desc, cmd.ttl_s, ctx.now, expires,
            cmd.ack_wait_ms, cmd.max_in_flight, ctx.index, cmd.owner, tuple(cmd.readers),
        )
        txn = ctx.txn
        txn.put(keys.mailbox(cmd.mail_id), records.encode(mb))
        if expires:
            txn.put(keys.expiry(expires, cmd.mail_id), b"")
            self._next_expiry = min(self._next_expiry, expires)
        if cmd.public:
            txn.put(keys.public(cmd.mail_id), b"")
        self._mailboxes[cmd.mail_id] = mb
        ctx.effects.append(MailboxCreated(mb))
        return Created(cmd.mail_id, True, cmd.ttl_s, expires or None)

    def _store_run(self, ctx: Apply, commands: list, start: int, results: list[Result]) -> int:
        """Store the StoreMessage at `start` and the ones right behind it to the same
        mailbox: what stays the same for all of them (the mailbox, its level prefixes, last
        seqs, tails and groups) is looked up once, and each then costs a key, a record, a
        put and an effect. Appends one result per command taken; returns the next position."""
        first = commands[start]
        mail_id = first.mail_id
        mb = self._mailboxes.get(mail_id)  # the usual: a cached mailbox that has not expired
        if mb is None or (mb.expires_ms and mb.expires_ms <= ctx.now):
            mb = self._live(ctx, mail_id)
            if mb is None:
                results.append(not_found(mail_id))
                return start + 1
        txn = ctx.txn
        put, get, pack_u64, encode, Message = txn.put, txn.get, keys.pack_u64, records.encode, records.Message
        prefixes = keys.message_prefixes(mail_id)
        last = self.last_seqs(txn, mail_id)  # before the puts: it reads the committed store
        tails = self._tails.get(mail_id)
        groups_here = self.groups_of(txn, mail_id)
        effects, now, base = ctx.effects, ctx.now, ctx.index << keys.SEQ_SHIFT
        level_of, words = c.WORD_INDEX_LEVEL, len(c.WORDS)
        asked = 0  # levels whose groups were asked to fill, in the order of the stores
        position, count = start, len(commands)
        while position < count:  # by index: a slice per run would copy the rest of the batch
            command = commands[position]
            if type(command) is not c.StoreMessage or command.mail_id != mail_id:
                break
            position += 1
            word = command.word
            if not 0 <= word < words:
                results.append(Failure(400, "invalid priority"))
                continue
            seq = base | (position - 1)
            dedup = command.dedup_id
            if dedup:  # Nats-Msg-Id: a second publish gets the first one's seq
                dkey = keys.dedup(mail_id, dedup)
                seen = get(dkey)
                if seen is not None:
                    results.append(Stored(mail_id, keys.unpack_u64(seen)[0], duplicate=True))
                    continue
            level = level_of[word]
            put(prefixes[level] + pack_u64(seq), encode(Message(word, now, command.headers, command.payload)))
            if dedup:  # after the message: a record that cannot be encoded stores neither
                put(dkey, pack_u64(seq))
            last[level] = seq
            if tails is not None and tails[level] is not None:
                tails[level].stored(seq)
            effects.append(MessageStored(mail_id, seq, level, word, now, command.headers, command.payload))
            bit = 1 << level
            if not asked & bit:
                asked |= bit
                for group in groups_here.values():
                    if group.rec.levels & bit:
                        ctx.want_fill(mb, group)
            results.append(Stored(mail_id, seq))
        return position

    def _find_level(self, txn: Txn, mail_id: str, seq: int, group: str | None = None) -> int | None:
        """The level message `seq` is stored at. A queue group's in-flight entry knows it
        without a read: a message in flight is stored (removing one takes it out of every
        group's in-flight set)."""
        if group is not None:
            found = self.groups_of(txn, mail_id).get(group)
            entry = found.inflight.get(seq) if found is not None else None
            if entry is not None:
                return entry.level
        for level in range(c.LEVELS):
            if txn.get(keys.message(mail_id, level, seq)) is not None:
                return level
        return None

    def _remove(self, ctx: Apply, mb: records.Mailbox, level: int, seq: int) -> None:
        ctx.txn.delete(keys.message(mb.mail_id, level, seq))
        tails = self._tails.get(mb.mail_id)
        if tails is not None and tails[level] is not None:
            tails[level].removed(seq)
        for group in self.groups_of(ctx.txn, mb.mail_id).values():
            if groups.forget(ctx, group, level, seq):
                ctx.want_fill(mb, group)

    def _locate(self, ctx: Apply, mail_id: str, seq: int, why: str = "",
                group: str | None = None) -> tuple[records.Mailbox, int] | Failure:
        """A live mailbox and the level of its message `seq`, or the 404 saying which is missing."""
        mb = self._live(ctx, mail_id)
        if mb is None:
            return not_found(mail_id)
        level = self._find_level(ctx.txn, mail_id, seq, group)
        if level is None:
            return Failure(404, f"message {seq} not found in {mail_id}{why}")
        return mb, level

    def _ack(self, ctx: Apply, cmd: c.Ack, position: int) -> Result:
        if cmd.kind == c.ACK and cmd.group is not None:  # the usual: a member acknowledges a delivery
            loaded = self._groups.get(cmd.mail_id)
            group = loaded.get(cmd.group) if loaded is not None else None
            entry = group.inflight.get(cmd.seq) if group is not None else None
            if entry is not None:
                mb = self._live(ctx, cmd.mail_id)
                if mb is not None:
                    self._remove(ctx, mb, entry.level, cmd.seq)
                    return DONE
        found = self._locate(ctx, cmd.mail_id, cmd.seq, " (already acknowledged?)", cmd.group)
        if isinstance(found, Failure):
            return found
        mb, level = found
        if cmd.kind in (c.ACK, c.TERM):
            self._remove(ctx, mb, level, cmd.seq)
            return DONE
        group = self.groups_of(ctx.txn, cmd.mail_id).get(cmd.group) if cmd.group else None
        if group is None or cmd.seq not in group.inflight:
            return DONE  # a plain subscriber's NAK/WPI: the message simply stays stored
        if cmd.kind == c.NAK:
            groups.take_back(ctx, group, cmd.seq)
            ctx.want_fill(mb, group)
        elif cmd.kind == c.WPI:
            groups.extend(ctx, mb, group, cmd.seq)
        else:
            return Failure(400, "unknown acknowledgement")
        return DONE

    def _ack_run(self, ctx: Apply, commands: list, start: int, results: list[Result]) -> int:
        """`_ack` for the Ack at `start` and the ones right behind it, in the usual case: a
        member of a live mailbox's only group acknowledges messages it holds. Each costs a
        delete and a few dict operations; the group is filled once. Returns the next position."""
        first = commands[start]
        mail_id, name = first.mail_id, first.group
        after = commands[start + 1] if start + 1 < len(commands) else None
        if type(after) is not c.Ack or after.mail_id != mail_id:  # one alone: not worth setting up
            results.append(self._ack(ctx, first, start))
            return start + 1
        loaded = self._groups.get(mail_id)
        group = loaded.get(name) if loaded is not None and len(loaded) == 1 and first.kind == c.ACK else None
        mb = self._mailboxes.get(mail_id) if group is not None else None
        if mb is None or (mb.expires_ms and mb.expires_ms <= ctx.now):
            results.append(self._ack(ctx, first, start))
            return start + 1
        inflight, release = group.inflight, groups.release
        delete, pack_u64, prefixes = ctx.txn.delete, keys.pack_u64, keys.message_prefixes(mail_id)
        tails = self._tails.get(mail_id)
        ACK = c.ACK
        position, count = start, len(commands)
        while position < count:  # by index: a slice per run would copy the rest of the batch
            command = commands[position]
            if type(command) is not c.Ack or command.kind != ACK or command.mail_id != mail_id or command.group != name:
                break
            seq = command.seq
            entry = inflight.get(seq)
            if entry is None:
                break  # not in flight here: _ack answers it
            level = entry.level
            key = prefixes[level] + pack_u64(seq)  # what could raise comes before any change
            if position == start:
                ctx.touch(group)
                ctx.want_fill(mb, group)
            delete(key)  # _remove, for a mailbox with one group
            if tails is not None and tails[level] is not None:
                tails[level].removed(seq)
            release(group, seq)
            results.append(DONE)
            position += 1
        if position == start:
            results.append(self._ack(ctx, first, start))
            return start + 1
        return position

    def _delete(self, ctx: Apply, cmd: c.DeleteMessage, position: int) -> Result:
        found = self._locate(ctx, cmd.mail_id, cmd.seq)
        if isinstance(found, Failure):
            return found
        self._remove(ctx, found[0], found[1], cmd.seq)
        return DONE

    def _join(self, ctx: Apply, cmd: c.GroupJoin, position: int) -> Result:
        mb = self._live(ctx, cmd.mail_id)
        if mb is None:
            return not_found(cmd.mail_id)
        if not cmd.levels & c.ALL_LEVELS:
            return Failure(400, "empty level filter")
        groups.join(ctx, mb, cmd.group, cmd.member, cmd.node, cmd.levels & c.ALL_LEVELS)
        return DONE

    def _leave(self, ctx: Apply, cmd: c.GroupLeave, position: int) -> Result:
        mb = self._live(ctx, cmd.mail_id)
        if mb is None:
            return not_found(cmd.mail_id)
        return DONE if groups.leave(ctx, mb, cmd.group, cmd.member) else Failure(404, "no such member")

    def _tick(self, ctx: Apply, cmd: c.Tick, position: int) -> Result:
        return None

    def _node_restarted(self, ctx: Apply, cmd: c.NodeRestarted, position: int) -> Result:
        self._drop_node_members(ctx, cmd.node, keep_boot=cmd.boot)
        old = ctx.txn.get(keys.node(cmd.node))
        if old is not None:  # forget the batches of its previous life
            old_boot = records.decode_node(old).boot
            if old_boot != cmd.boot:
                prefix = keys.applied_batches(old_boot)
                ctx.txn.delete_range(prefix, keys.end_of(prefix))
        ctx.txn.put(keys.node(cmd.node), records.encode(records.Node(cmd.node, cmd.boot, cmd.client_url, cmd.name)))
        ctx.effects.append(NodeAnnounced(cmd.node, cmd.client_url, cmd.name))
        return DONE

    def _node_down(self, ctx: Apply, cmd: c.NodeDown, position: int) -> Result:
        self._drop_node_members(ctx, cmd.node, keep_boot=None)
        ctx.effects.append(MembersDropped(cmd.node))
        return DONE

    def _drop_node_members(self, ctx: Apply, node: str, keep_boot: str | None) -> None:
        prefix = keys.node_members(node)
        for key, _ in list(ctx.txn.scan(prefix, keys.end_of(prefix))):
            _, mail_id, name, member = keys.split_member_index(key)
            if keep_boot is not None and member.split("/")[1:2] == [keep_boot]:
                continue
            mb = self.mailbox(ctx.txn, mail_id)
            if mb is None or not groups.leave(ctx, mb, name, member):
                ctx.txn.delete(key)


_RUNS: dict[type, Callable] = {c.StoreMessage: State._store_run, c.Ack: State._ack_run}

_HANDLERS: dict[type, Callable] = {
    c.CreateMailbox: State._create,
    c.Ack: State._ack,
    c.DeleteMessage: State._delete,
    c.GroupJoin: State._join,
    c.GroupLeave: State._leave,
    c.Tick: State._tick,
    c.NodeRestarted: State._node_restarted,
    c.NodeDown: State._node_down,
}
