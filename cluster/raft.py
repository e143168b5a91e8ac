"""The only module that imports PySyncObj: one replicated method, snapshots, our settings.

`RaftNode.apply_entry(blob)` is the single `@replicated` method (PySyncObj numbers
methods by name, so one method that takes an encoded batch keeps the log stable). On
every node, for every committed entry, PySyncObj's tick calls it; we decode the batch,
apply it to RocksDB (`State.apply_batch`) and hand (index, batch, results, effects) to
`on_applied`. The index of the entry being applied is PySyncObj's `raftLastApplied + 1`
(it is not passed to the method).

PySyncObj runs on the node's event loop, not in a thread of its own (`autoTick=False`):
`LoopPoller` registers its sockets with the loop, so a Raft message is handled as soon as
it arrives, and a tick runs right after (that is where the leader advances the commit
index, applies, and sends) and every `TICK_PERIOD_S` for timers (elections, heartbeats,
reconnects). One thread means no GIL hand-offs between a tick thread and the loop, and no
cross-thread wake-ups on the path of a write.

Apply must never raise (PySyncObj would re-apply the entry forever): domain errors are
results; an entry we cannot decode or a store that cannot write is a bug or a broken
disk, so the process logs it and exits, and a restart replays from the journal.

Settings (see `make_conf`): commands never wait for a leader (we answer 503 instead),
an isolated leader steps down after `leader_fallback_s`, snapshots are RocksDB
checkpoints (`cluster/snapshot.py`), and `password` (the cluster secret) encrypts and
authenticates peer traffic, which PySyncObj otherwise unpickles from anyone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import zlib
from typing import Callable

import pysyncobj.syncobj
import pysyncobj.tcp_connection
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.monotonic import monotonic as monotonicTime
from pysyncobj.poller import POLL_EVENT_TYPE, Poller

__all__ = ["FAIL_REASON", "RaftNode", "make_conf"]

from cluster import snapshot
from cluster.journal import Journal
from cluster.commands import Batch, decode_batch
from cluster.effects import Effect, Result
from cluster.state import State

log = logging.getLogger("mq9.raft")

_DEBUG = os.environ.get("MQ9_DEBUG_RAFT") == "1"
# Tests only: run PySyncObj's stock log handling, to show the regression tests catch its bugs.
_STOCK = os.environ.get("MQ9_TEST_STOCK_PYSYNCOBJ") == "1"
OnApplied = Callable[[int, Batch, list[Result], list[Effect]], None]

FAILURE_TEXT = {
    FAIL_REASON.QUEUE_FULL: "raft queue full",
    FAIL_REASON.MISSING_LEADER: "no leader (no quorum)",
    FAIL_REASON.DISCARDED: "discarded by a new leader",
    FAIL_REASON.NOT_LEADER: "leader changed before commit",
    FAIL_REASON.LEADER_CHANGED: "leader changed before commit",
    FAIL_REASON.REQUEST_DENIED: "request denied",
    FAIL_REASON.UNKNOWN_OUTCOME: "unknown outcome",
}
SUCCESS = FAIL_REASON.SUCCESS
TICK_PERIOD_S = 0.01  # timers: elections, heartbeats (appendEntriesPeriod), reconnects
_READ = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR
_WRITE = POLL_EVENT_TYPE.WRITE


class LoopPoller(Poller):
    """PySyncObj's poller interface on an asyncio loop: its sockets become loop readers
    and writers, and every event is followed by a tick (`after_events`), run once for all
    the events of one loop pass. Errors show up as readable sockets whose recv fails,
    which PySyncObj handles as a disconnect."""

    def __init__(self, loop: asyncio.AbstractEventLoop, after_events: Callable[[], None]) -> None:
        self._loop = loop
        self._after_events = after_events
        self._subs: dict[int, tuple[Callable, int]] = {}

    def subscribe(self, descr: int, callback: Callable, eventMask: int) -> None:
        old = self._subs.get(descr, (None, 0))[1]
        self._subs[descr] = (callback, eventMask)
        if eventMask & _READ and not old & _READ:
            self._loop.add_reader(descr, self._ready, descr, POLL_EVENT_TYPE.READ)
        elif old & _READ and not eventMask & _READ:
            self._loop.remove_reader(descr)
        if eventMask & _WRITE and not old & _WRITE:
            self._loop.add_writer(descr, self._ready, descr, POLL_EVENT_TYPE.WRITE)
        elif old & _WRITE and not eventMask & _WRITE:
            self._loop.remove_writer(descr)

    def unsubscribe(self, descr: int) -> None:
        """PySyncObj closes a socket before it unsubscribes it: the loop may find the fd
        gone (the stock asyncio loop raises EBADF), which must not break its disconnect."""
        if self._subs.pop(descr, None) is not None:
            for remove in (self._loop.remove_reader, self._loop.remove_writer):
                try:
                    remove(descr)
                except OSError:
                    pass

    def close(self) -> None:
        for descr in list(self._subs):
            self.unsubscribe(descr)

    def _ready(self, descr: int, event: int) -> None:
        sub = self._subs.get(descr)
        if sub is None:
            return
        try:
            sub[0](descr, event)
        except Exception:
            log.exception("Raft socket event failed")
        self._after_events()

    def poll(self, timeout: float) -> None:
        """Events are dispatched by the loop; a tick has nothing to wait for."""


class _TickNotifier:
    """Stands in for PySyncObj's PipeNotifier: `notify` (a command was submitted) asks
    for a tick."""

    def __init__(self, kick: Callable[[], None]) -> None:
        self.notify = kick


def wait_bindable(address: str, timeout_s: float = 10.0) -> None:
    """Wait until the Raft port can be bound (a previous process may still hold it), or
    raise OSError. PySyncObj, when not in a thread of its own, would spin on it. Probes
    what PySyncObj binds: the wildcard address (0.0.0.0, or :: for an IPv6 address) at
    the Raft port, whatever host the address names.

    Binding the `--raft` host only (PySyncObj's `bindAddress`) was tried and taken back:
    in the compose partition test a node whose cluster address went away and came back
    never accepted Raft connections again (PySyncObj's listener does not recover when its
    address disappears), so the cut-off node never rejoined."""
    host, _, port = address.rpartition(":")
    ipv6 = ":" in host
    deadline = monotonicTime() + timeout_s
    while True:
        probe = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("::" if ipv6 else "0.0.0.0", int(port)))
            return
        except OSError:
            if monotonicTime() > deadline:
                raise
            time.sleep(0.2)
        finally:
            probe.close()


def make_conf(data_dir: str, state: State, secret: str, on_state_changed: Callable[[int, int], None],
              leader_fallback_s: float = 1.5, compact_min_entries: int = 50_000,
              compact_min_time_s: float = 120.0, bind_address: str | None = None) -> SyncObjConf:
    store = state.store
    dump = os.path.join(data_dir, "raft.snapshot")
    return SyncObjConf(
        journalFile=os.path.join(data_dir, "raft.journal"),
        fullDumpFile=dump,
        serializer=lambda path, meta: snapshot.write(store, path, meta),
        deserializer=lambda path: snapshot.read(store, path, state.reset),
        useFork=False,
        autoTick=False,  # ticks run on the event loop (LoopPoller, RaftNode.kick)
        appendEntriesUseBatch=False,  # send entries at once: our batcher already groups commands
        # one append message may carry up to 8 MiB, so an entry (a batch, at most ~2 MiB)
        # never takes PySyncObj's chunked "transmission" path, which re-pickles it per chunk
        appendEntriesBatchSizeBytes=8 << 20,
        sendBufferSize=256 << 10,  # also the size of every recv() PySyncObj makes
        recvBufferSize=256 << 10,
        appendEntriesPeriod=0.05,
        raftMinTimeout=0.4,
        raftMaxTimeout=1.0,
        leaderFallbackTimeout=leader_fallback_s,
        commandsWaitLeader=False,
        commandsQueueSize=100_000,
        logCompactionMinEntries=compact_min_entries,
        logCompactionMinTime=compact_min_time_s,
        connectionRetryTime=0.5,
        connectionTimeout=2.0,
        dnsCacheTime=5.0,  # a container that comes back may have a new address
        dnsFailCacheTime=1.0,
        dynamicMembershipChange=False,
        password=secret or None,
        onStateChanged=on_state_changed,
        bindAddress=bind_address,  # None: PySyncObj's every-interface default (see wait_bindable)
    )


class _NoCompression:
    """PySyncObj zlib-compresses (level 3) every peer message. Our entries are batches of
    already compact MessagePack; compressing a 1 MiB batch costs milliseconds of CPU per
    follower in every tick, for little gain on a LAN. All our nodes use this, so
    peers agree; it is part of our wire between nodes, like the pickle format itself."""

    @staticmethod
    def compress(data: bytes, level: int = -1) -> bytes:
        return data

    @staticmethod
    def decompress(data: bytes) -> bytes:
        return data


pysyncobj.tcp_connection.zlib = _NoCompression
_stock_keepalive = pysyncobj.tcp_connection.TcpConnection.setSockoptKeepalive


def _keepalive_and_bounded_waits(self) -> None:
    """PySyncObj checks its connect timeout only when the socket has an event, so a
    connect into a vanished network waits for the kernel (about 2 minutes of SYN
    retries). Bound it per socket: 2 SYN retries (~7 s), and 5 s for unacknowledged data."""
    _stock_keepalive(self)
    sock = self._TcpConnection__socket
    if sock is not None and hasattr(socket, "TCP_SYNCNT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)


pysyncobj.tcp_connection.TcpConnection.setSockoptKeepalive = _keepalive_and_bounded_waits

MAX_PEER_MESSAGE = 64 << 20  # our largest: an 8 MiB append (make_conf) or a snapshot chunk, pickled
_stock_parse = pysyncobj.tcp_connection.TcpConnection._TcpConnection__processParseMessage


def _bounded_parse(self):
    """PySyncObj reads a peer message's 4-byte length and buffers that much before it
    checks anything (the cluster secret included): a stranger announcing 2 GiB would make
    the node hold 2 GiB. A length no peer of ours sends ends the connection at once."""
    buffer = self._TcpConnection__readBuffer
    if len(buffer) >= 4:
        length = int.from_bytes(buffer[:4], "little", signed=True)
        if length < 0 or length > MAX_PEER_MESSAGE:
            log.warning("Raft connection sent a %d-byte message header: not a peer, disconnecting", length)
            self.disconnect()
            return None
    return _stock_parse(self)


pysyncobj.tcp_connection.TcpConnection._TcpConnection__processParseMessage = _bounded_parse


def _create_journal(journal_file: str | None = None) -> Journal:
    if journal_file is None:
        raise ValueError("mq9 always runs with a journal file")
    return Journal(journal_file)


class RaftNode(SyncObj):
    """A PySyncObj node whose state is our RocksDB store."""

    def __init__(self, self_addr: str, peers: list[str], conf: SyncObjConf, state: State, on_applied: OnApplied,
                 loop: asyncio.AbstractEventLoop, local_writes: Callable[[], bool] = lambda: True) -> None:
        self._state = state
        self._on_applied = on_applied
        self._local_writes = local_writes  # does this node wait for writes of its own?
        self._loop = loop
        self._tick_queued: asyncio.Handle | None = None
        self._append_queued = False
        self._applied_in_this_tick = False
        self._in_tick = False
        self._destroyed = False
        self.stash_restores = 0  # entries the follower guard kept that stock PySyncObj would have dropped
        self.next_index_fixes = 0  # late replies that would have moved a follower's nextIndex back
        self.log_shrinks = 0
        self._reset_floor: dict = {}  # per follower: the lowest nextIndex it asked for since its last success
        pysyncobj.syncobj.createJournal = _create_journal  # PySyncObj looks these globals up in __init__
        pysyncobj.syncobj.createPoller = lambda _kind: LoopPoller(loop, self.kick)
        if _STOCK:
            log.warning("MQ9_TEST_STOCK_PYSYNCOBJ=1: running PySyncObj's unsafe stock log handling (tests only)")
        wait_bindable(self_addr)
        super().__init__(self_addr, peers, conf)
        self._drop_pipe_notifier()
        self._timer = loop.call_later(TICK_PERIOD_S, self._periodic)

    def _drop_pipe_notifier(self) -> None:
        """PySyncObj writes a byte into a pipe on every submitted command to wake its tick
        thread. There is no such thread here: a submit asks for a tick instead."""
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is None:
            return
        poller = self._poller
        for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
            fd = getattr(notifier, name, None)
            if fd is not None:
                poller.unsubscribe(fd)
                os.close(fd)
        self._SyncObj__pipeNotifier = _TickNotifier(self.kick)

    # ---- ticks on the loop -----------------------------------------------------------

    def kick(self) -> None:
        """Run a tick soon (once per loop pass, however many asked)."""
        if self._tick_queued is None and not self._destroyed:
            self._tick_queued = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._tick_queued = None
        if self._destroyed:
            return
        self._in_tick = True
        self._applied_in_this_tick = False
        try:
            self.doTick(0.0)
        except Exception:
            log.exception("Raft tick failed")
        finally:
            self._in_tick = False

    def tick_now(self) -> None:
        """Run a tick at once, in place of one already asked for: a write was just submitted,
        and appending (leader) or forwarding (follower) it need not wait for the next loop
        pass. From inside a tick, ask for another one instead."""
        if self._in_tick:
            self.kick()
            return
        if self._tick_queued is not None:
            self._tick_queued.cancel()
        self._tick()

    # The leader's order of work when entries commit. A send to a sleeping peer costs 60-150
    # µs on this VM, so who waits for what decides the latency of a write:
    # - this node waits for writes of its own: apply first, let the replies and deliveries
    #   (queued by `on_applied`) go out, send the new commit index a loop pass later;
    # - it does not (the writes came from followers, whose clients wait for the commit
    #   index to reach them): send the commit index first, so followers apply while the
    #   leader does (PySyncObj sends it only after applying).

    def _SyncObj__applyLogEntries(self) -> bool:
        """Returns whether the tick must send appends after applying (PySyncObj's rule),
        which is no longer so when the commit index went out before."""
        early = self._isLeader() and self._SyncObj__raftCommitIndex > self._SyncObj__raftLastApplied \
            and not self._local_writes()
        if early:
            SyncObj._SyncObj__sendAppendEntries(self)
        return SyncObj._SyncObj__applyLogEntries(self) and not early

    def _SyncObj__sendAppendEntries(self) -> None:
        if self._append_queued or self._destroyed:
            return
        if self._applied_in_this_tick:  # after this pass's replies: see above
            self._append_queued = True
            self._loop.call_soon(self._send_appends)
        else:  # new entries, heartbeats: at once
            SyncObj._SyncObj__sendAppendEntries(self)

    def _send_appends(self) -> None:
        self._append_queued = False
        if not self._destroyed and self._isLeader():
            SyncObj._SyncObj__sendAppendEntries(self)

    def _periodic(self) -> None:
        if self._destroyed:
            return
        self._tick()
        self._timer = self._loop.call_later(TICK_PERIOD_S, self._periodic)

    def destroy(self) -> None:
        self._destroyed = True
        self._timer.cancel()
        super().destroy()
        self._poller.close()  # PySyncObj closed its sockets; nothing may stay on the loop

    def _SyncObj__onMessageReceived(self, node, message) -> None:
        """PySyncObj's message handler, with the two fixes to its log handling (see the notes).

        Leader: a late `next_node_idx` success reply must never move a follower's nextIndex
        back (that makes the leader resend entries the follower has, which stock followers
        then truncate). Follower: after an append_entries message, entries the journal
        stashed instead of dropping go back (see cluster/journal.py).
        """
        if _STOCK:
            return self._stock_handler(node, message)
        kind = message.get("type") if isinstance(message, dict) else None
        nexts = self._SyncObj__raftNextIndex
        before = nexts.get(node) if kind == "next_node_idx" else None
        journal = self._SyncObj__raftLog
        last_before = journal[-1][1] if kind == "append_entries" and len(journal) else None
        journal.conflict = False
        if _DEBUG and kind in ("append_entries", "next_node_idx"):
            log.warning("DBG recv %s from %s: %s last=%s", kind, node, {k: (v if k not in ("entries", "data", "serialized") else (len(v) if v is not None else None)) for k, v in message.items()}, journal[-1][1:])
        SyncObj._SyncObj__onMessageReceived(self, node, message)
        if _DEBUG and kind in ("append_entries", "next_node_idx"):
            log.warning("DBG after last=%s next=%s", journal[-1][1:], dict(nexts))
        if before is not None and message.get("success") and not message.get("reset") \
                and nexts.get(node, before) < before:
            nexts[node] = before
            self.next_index_fixes += 1
        if kind == "next_node_idx" and self._isLeader():
            self._settle_reset(node, message)
        if kind == "append_entries":
            self.stash_restores += journal.restore_stash()
            if last_before is not None and len(journal) and journal[-1][1] < last_before and not journal.conflict \
                    and message.get("serialized") is None:
                self.log_shrinks += 1  # must stay 0: Raft drops entries only on a term conflict
                log.error("follower log shrank from %d to %d without a term conflict", last_before, journal[-1][1])

    @replicated
    def apply_entry(self, blob: bytes) -> None:
        index = self._SyncObj__raftLastApplied + 1
        try:
            batch = decode_batch(blob)
        except Exception:
            log.critical("undecodable log entry at index %d: exiting", index, exc_info=True)
            os._exit(70)
        try:
            out = self._state.apply_batch(batch, index, zlib.crc32(blob))
        except BaseException:
            log.critical("applying index %d failed (storage?): exiting", index, exc_info=True)
            os._exit(71)
        self._applied_in_this_tick = True
        if out is not None:
            self._on_applied(index, batch, out[0], out[1])

    def _stock_handler(self, node, message) -> None:
        """The unfixed handler (MQ9_TEST_STOCK_PYSYNCOBJ=1): journal stash dropped, shrinks counted."""
        journal = self._SyncObj__raftLog
        kind = message.get("type") if isinstance(message, dict) else None
        last_before = journal[-1][1] if kind == "append_entries" and len(journal) else None
        journal.conflict = False
        SyncObj._SyncObj__onMessageReceived(self, node, message)
        if kind == "append_entries":
            journal.drop_stash()
            if last_before is not None and len(journal) and journal[-1][1] < last_before and not journal.conflict:
                self.log_shrinks += 1

    def _settle_reset(self, node, message: dict) -> None:
        """Rejections arrive in bursts: the leader pipelines many appends, and the follower
        rejects each. A rejection for a mismatched term says "go back to i"; the ones for
        the appends sent after it say "my log ends at j > i". Stock PySyncObj lets the last
        one win, so nextIndex flips back to j and the follower never catches up (seen after
        a partition heals). Every rejection is an upper bound on where the logs match, so
        keep the lowest one until the follower accepts an append."""
        floors = self._reset_floor
        if message.get("success"):
            floors.pop(node, None)
            return
        if not message.get("reset"):
            return
        floor = min(message["next_node_idx"], floors.get(node, message["next_node_idx"]))
        floors[node] = floor
        nexts = self._SyncObj__raftNextIndex
        if nexts.get(node, floor) > floor:
            nexts[node] = floor
            self.next_index_fixes += 1

    def _checkCommandsToApply(self) -> None:
        """PySyncObj appends new commands at the end of a tick and commits them in the next.

        With peers, their replies bring the next tick at once; a single node has no one to
        wake it, so it would wait a whole tick period. Ask for the next tick instead.
        """
        log_before = len(self._SyncObj__raftLog)
        super()._checkCommandsToApply()
        if not self._SyncObj__otherNodes and len(self._SyncObj__raftLog) != log_before:
            self.kick()

    # ---- status ----------------------------------------------------------------------

    def can_accept_writes(self, contact_s: float = 0.3) -> bool:
        """Would a command sent now reach a leader that is in contact with a majority?

        A leader that heard from too few followers lately, or a follower whose link to the
        leader is down, would append or forward into the void; the caller holds the write
        (and answers 503 "not stored" at its deadline) instead.
        """
        if self._isLeader():
            others = self._SyncObj__otherNodes
            if not others:
                return True
            now = monotonicTime()
            times = self._SyncObj__lastResponseTime
            heard = 1 + sum(1 for n in others if now - times.get(n, 0.0) < contact_s)
            return heard > (len(others) + 1) / 2
        leader = self._getLeader()
        return leader is not None and self.isNodeConnected(leader)

    def log_bounds(self) -> tuple[int, int]:
        """The first and last index the journal holds; what lies before the first is in
        the last snapshot."""
        journal = self._SyncObj__raftLog
        if not len(journal):
            return 0, 0
        return journal[0][1], journal[-1][1]

    def leader_address(self) -> str | None:
        leader = self._getLeader()
        return leader.address if leader is not None else None

    def is_leader(self) -> bool:
        return self._isLeader()

    def term(self) -> int:
        return self._getTerm()
