"""The seam between the event loop and Raft: submit a command, await its result.

`Replicator.write(command, callback)` calls back with the command's Result (`submit`
wraps that in a future for code that awaits). The batcher groups commands; each batch
is stamped with this node's clock and boot id, encoded, and handed to PySyncObj, whose
ticks run on the same event loop (cluster/raft.py). When the entry is applied (on every
node), the results and effects are passed on with `call_soon`, outside PySyncObj's
tick; there, the node that sent the batch calls its callbacks, and every node's
listeners (delivery, discovery) receive the effects, in log order.

Every write has a deadline (`write_timeout_s`): a batch that is neither applied nor
refused by then is answered with 503, so a client never hangs and never gets a false
success. A 503 may still commit later (a leader change can do that); clients that
retry with a `Nats-Msg-Id` header are safe. The 503 text says which case it is:
"no quorum: not stored" when the batch never left this node, "outcome unknown" once
Raft had it.

Within the deadline a batch is resent as often as needed: when PySyncObj refuses it
(no leader, leader changed before commit), and when the leader changed while we waited
(a forward to a dead leader vanishes silently). Resending is safe because apply skips
a batch whose (origin, number) it already applied. A batch is handed to Raft only when
a leader in contact with a majority can take it (an isolated leader would append it to
a log nobody confirms). So a failover shows up as a delay, not as errors.

On the leader, a ticker commits a `Tick` whenever a mailbox TTL or an ack deadline is
due, so time-based decisions happen at one log position on every node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from functools import partial
from typing import Callable

from cluster import commands as c
from cluster.batcher import Batcher
from cluster.effects import Effect, Failure, Result
from cluster.raft import SUCCESS, RaftNode, make_conf
from cluster.state import State
from cluster.store import Store

log = logging.getLogger("mq9.replicator")

Listener = Callable[[int, list[Effect]], None]
# (commands in the entry, seconds from Raft to applied, seconds from the first command's
# arrival to applied): for this node's own batches; (n, None, None) for everyone else's
BatchObserver = Callable[[int, float | None, float | None], None]
RETRY_S = 0.05
STALL_S = 0.5


class _Waiting:
    """A batch sent to Raft (or waiting for a leader to take it) and the clients awaiting it."""

    __slots__ = ("callbacks", "timer", "blob", "ever_sent", "attempt", "sent_under", "opened", "sent")

    def __init__(self, callbacks: list[Callable], timer: asyncio.TimerHandle, blob: bytes, opened: float) -> None:
        self.callbacks = callbacks
        self.timer = timer
        self.blob = blob
        self.opened = opened  # when its first command arrived (time.monotonic)
        self.sent = time.monotonic()  # when it was made and first offered to Raft
        self.ever_sent = False  # handed to Raft once: from then on a timeout means "outcome unknown"
        self.attempt = 0  # which send is current; callbacks of earlier ones are ignored
        self.sent_under: tuple = ()  # (leader, term) when the current attempt was sent


def _call_all(callbacks: list[Callable], results: list) -> None:
    for callback, result in zip(callbacks, results):
        try:
            callback(result)
        except Exception:
            log.exception("write callback failed")


def unavailable(reason: str) -> Failure:
    return Failure(503, f"unavailable: {reason}")


class Replicator:
    """One node's access to the replicated state."""

    def __init__(self, data_dir: str, raft_address: str, peers: list[str], secret: str = "",
                 write_timeout_s: float = 2.5, tick_interval_s: float = 0.25, client_url: str = "",
                 name: str = "", node_down_after_s: float = 3.0, compact_min_entries: int = 50_000,
                 compact_min_time_s: float = 120.0) -> None:
        self.compaction = (compact_min_entries, compact_min_time_s)
        self.data_dir = data_dir
        self.client_url = client_url
        self.name = name or raft_address
        self.node_down_after_s = node_down_after_s
        self.raft_address = raft_address
        self.peers = [p for p in peers if p != raft_address]
        self.secret = secret
        self.write_timeout_s = write_timeout_s
        self.tick_interval_s = tick_interval_s
        self.boot = os.urandom(6).hex()  # this process's incarnation
        os.makedirs(data_dir, exist_ok=True)
        self.store = Store(os.path.join(data_dir, "rocksdb"))
        self.state = State(self.store)
        self.raft: RaftNode | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batcher: Batcher | None = None
        self._batch_number = 0
        self._waiting: dict[int, _Waiting] = {}
        self._listeners: list[Listener] = []
        self._observers: list[BatchObserver] = []
        self._tasks: list[asyncio.Task] = []

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._batcher = Batcher(self._loop, self._send)
        conf = make_conf(self.data_dir, self.state, self.secret, self._on_state_changed,
                         compact_min_entries=self.compaction[0], compact_min_time_s=self.compaction[1])
        self.raft = RaftNode(self.raft_address, self.peers, conf, self.state, self._applied_in_tick, self._loop,
                             local_writes=lambda: bool(self._waiting))
        log.info("Raft listening on %s, peers %s", self.raft_address, ", ".join(self.peers) or "none (single node)")
        host = self.raft_address.rpartition(":")[0].strip("[]")
        if not self.secret and not (host.startswith("127.") or host in ("::1", "localhost")):
            log.warning("No cluster secret: anyone who can reach the Raft port %s can take part in this cluster "
                        "and run code in this node (PySyncObj unpickles what it receives); set --cluster-secret",
                        self.raft_address)
        self._tasks.append(self._loop.create_task(self._ticker()))
        self._tasks.append(self._loop.create_task(self._announce_restart()))
        self._tasks.append(self._loop.create_task(self._watch_peers()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.raft is not None:
            self.raft.destroy()
        self.store.close()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_batch_observer(self, observer: BatchObserver) -> None:
        """Called once per applied entry (metrics: batch sizes, commit and store latency)."""
        self._observers.append(observer)

    # ---- writes ----------------------------------------------------------------------

    def write(self, command: c.Command, callback: Callable[[Result], None]) -> None:
        """Replicate one command; `callback(result)` runs on the loop once it is applied here
        (or with a 503 Failure at the deadline). The hot path: no future, no extra loop pass."""
        self._batcher.add(command, callback)

    def submit(self, command: c.Command) -> asyncio.Future:
        """Replicate one command; the future resolves to its Result (a 503 Failure on timeout)."""
        future = self._loop.create_future()

        def resolve(result: Result) -> None:
            if not future.done():
                future.set_result(result)

        self._batcher.add(command, resolve)
        return future

    def write_stats(self) -> dict:
        """How well group commit is doing: Raft entries this node sent and commands in them."""
        b = self._batcher
        return {"batches": b.batches_sent if b else 0, "commands": b.commands_sent if b else 0}

    def pending_writes(self) -> int:
        return sum(len(waiting.callbacks) for waiting in self._waiting.values())

    def _send(self, commands: list[c.Command], callbacks: list[Callable], opened: float) -> None:
        self._batch_number += 1
        number = self._batch_number
        batch = c.Batch(int(time.time() * 1000), self.boot, number, commands)
        try:
            blob = c.encode_batch(batch)
        except (OverflowError, TypeError, ValueError):  # a value the log cannot hold (a bug upstream)
            self._send_encodable(commands, callbacks, opened)
            return
        timer = self._loop.call_later(self.write_timeout_s, self._deadline, number)
        self._waiting[number] = _Waiting(callbacks, timer, blob, opened)
        self._try_send(number)

    def _send_encodable(self, commands: list[c.Command], callbacks: list[Callable], opened: float) -> None:
        """Answer the commands that cannot be encoded with 400 and send the others: one bad
        value must neither lose its batch's other writes nor leak the batcher's in-flight slot."""
        good: list[c.Command] = []
        good_callbacks: list[Callable] = []
        bad: list[Callable] = []
        for command, callback in zip(commands, callbacks):
            try:
                c.encode_batch(c.Batch(0, self.boot, 0, [command]))
            except (OverflowError, TypeError, ValueError):
                log.error("refused a command the log cannot encode: %s", type(command).__name__)
                bad.append(callback)
                continue
            good.append(command)
            good_callbacks.append(callback)
        _call_all(bad, [Failure(400, "invalid value: a number does not fit in 64 bits")] * len(bad))
        if good:
            self._send(good, good_callbacks, opened)
        else:
            self._batcher.done()

    def _try_send(self, number: int) -> None:
        """Hand the batch to Raft if a leader with a majority can take it; else try again soon."""
        waiting = self._waiting.get(number)
        if waiting is None:  # answered (or past its deadline) meanwhile
            return
        if not self.raft.can_accept_writes():
            self._loop.call_later(RETRY_S, self._try_send, number)
            return
        waiting.attempt += 1
        waiting.ever_sent = True
        waiting.sent_under = (self.raft.leader_address(), self.raft.term())
        self.raft.apply_entry(waiting.blob, callback=partial(self._raft_callback, number, waiting.attempt))
        self.raft.tick_now()  # appends it (leader) or forwards it (follower) now
        self._loop.call_later(STALL_S, self._check_stall, number, waiting.attempt)

    def _raft_callback(self, number: int, attempt: int, result: object, error: int) -> None:  # in a tick
        if error != SUCCESS:
            self._loop.call_soon(self._refused, number, attempt, error)

    def _refused(self, number: int, attempt: int, error: int) -> None:
        """PySyncObj gave up on this attempt (no leader, leader changed...): send it again.

        Safe even when the attempt was appended somewhere and commits later: apply skips a
        batch whose (origin, number) it has already applied."""
        waiting = self._waiting.get(number)
        if waiting is not None and waiting.attempt == attempt:
            waiting.attempt += 1  # this attempt is over; a late callback for it is ignored
            self._loop.call_later(RETRY_S, self._try_send, number)

    def _check_stall(self, number: int, attempt: int) -> None:
        """A follower's forward to a leader that died is dropped without a word: if the
        leader changed since we sent and nothing came back, send again."""
        waiting = self._waiting.get(number)
        if waiting is None or waiting.attempt != attempt:
            return
        if (self.raft.leader_address(), self.raft.term()) != waiting.sent_under:
            waiting.attempt += 1
            self._try_send(number)
        else:
            self._loop.call_later(STALL_S, self._check_stall, number, attempt)

    def _deadline(self, number: int) -> None:
        waiting = self._waiting.get(number)
        if waiting is None:
            return
        if waiting.ever_sent:
            reason = "write timed out: outcome unknown, retry with the same Nats-Msg-Id"
            self._resolve_failed(number, unavailable(reason))
        else:
            # no leader with a majority took it in write_timeout_s: what queued behind it would
            # wait its own turn to fail the same way (a backlog of batches, one timeout each)
            failure = unavailable("no quorum: not stored")
            dropped = self._batcher.fail_queued(failure)  # first, so no queued batch is sent in their place
            for other, queued in list(self._waiting.items()):
                if not queued.ever_sent:  # this one, and any other batch no leader took
                    self._resolve_failed(other, failure)
            if dropped:
                log.warning("No quorum for %.1fs: %d queued writes answered 503 not stored", self.write_timeout_s, dropped)

    def _resolve_failed(self, number: int, failure: Failure) -> None:
        waiting = self._waiting.pop(number, None)
        if waiting is None:
            return
        waiting.timer.cancel()
        _call_all(waiting.callbacks, [failure] * len(waiting.callbacks))
        self._batcher.done()

    # ---- applied entries -------------------------------------------------------------

    def _applied_in_tick(self, index: int, batch: c.Batch, results: list[Result], effects: list[Effect]) -> None:
        self._loop.call_soon(self._applied, index, batch, results, effects)

    def _applied(self, index: int, batch: c.Batch, results: list[Result], effects: list[Effect]) -> None:
        waiting = None
        if batch.origin == self.boot:
            waiting = self._waiting.pop(batch.number, None)
            if waiting is not None:
                waiting.timer.cancel()
                _call_all(waiting.callbacks, results)
                self._batcher.done()
        if self._observers:
            self._observe(len(batch.commands), waiting)
        for listener in self._listeners:
            try:
                listener(index, effects)
            except Exception:
                log.exception("effect listener failed at index %d", index)

    def _observe(self, commands: int, waiting: _Waiting | None) -> None:
        commit_s = store_s = None
        if waiting is not None:
            now = time.monotonic()
            commit_s, store_s = now - waiting.sent, now - waiting.opened
        for observer in self._observers:
            try:
                observer(commands, commit_s, store_s)
            except Exception:
                log.exception("batch observer failed")

    # ---- time and membership ---------------------------------------------------------

    def _something_due(self, now_ms: int) -> bool:
        return self.state.next_due_ms <= now_ms

    async def _ticker(self) -> None:
        ticking: asyncio.Future | None = None
        while True:
            await asyncio.sleep(self.tick_interval_s)
            try:
                if self.raft.is_leader() and (ticking is None or ticking.done()) \
                        and self._something_due(int(time.time() * 1000)):
                    ticking = self.submit(c.Tick())
            except Exception:
                log.exception("ticker")

    async def _announce_restart(self) -> None:
        """Tell the cluster this node restarted, so members of its previous life are dropped."""
        command = c.NodeRestarted(self.raft_address, self.boot, self.client_url, self.name)
        while True:
            result = await self.submit(command)
            if not isinstance(result, Failure):
                log.info("Joined the cluster as %s (boot %s)", self.raft_address, self.boot)
                return
            await asyncio.sleep(0.2)

    async def _watch_peers(self) -> None:
        """On the leader: a peer unreachable for `node_down_after_s` is committed as down,
        which hands its queue-group members' messages to members on live nodes."""
        down_since: dict[str, float] = {}
        reported: set[str] = set()
        while True:
            await asyncio.sleep(0.25)
            try:
                if not self.is_leader():
                    down_since.clear()
                    reported.clear()
                    continue
                now = time.monotonic()
                for peer in self.raft.otherNodes:
                    address = peer.address
                    if self.raft.isNodeConnected(peer):
                        down_since.pop(address, None)
                        reported.discard(address)
                        continue
                    since = down_since.setdefault(address, now)
                    if now - since >= self.node_down_after_s and address not in reported:
                        reported.add(address)
                        log.warning("Node %s unreachable for %.1fs: committing it as down", address, now - since)
                        self.submit(c.NodeDown(address))
            except Exception:
                log.exception("peer watch")

    def connected_peers(self) -> list[str]:
        if self.raft is None:
            return []
        return [p.address for p in self.raft.otherNodes if self.raft.isNodeConnected(p)]

    # ---- status ----------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.raft_address

    def is_leader(self) -> bool:
        return self.raft is not None and self.raft.is_leader()

    def status(self) -> dict:
        raw = self.raft.getStatus() if self.raft else {}
        leader = raw.get("leader")
        return {
            "node": self.raft_address,
            "state": {0: "follower", 1: "candidate", 2: "leader"}.get(raw.get("state"), "unknown"),
            "leader": leader.address if leader is not None else None,
            "term": raw.get("raft_term"),
            "commit_index": raw.get("commit_idx"),
            "applied_index": raw.get("last_applied"),
            "log_len": raw.get("log_len"),
            "has_quorum": raw.get("has_quorum"),
            "peers": {p: raw.get(f"partner_node_status_server_{p}", 0) == 2 for p in self.peers},
            "match_index": {p: raw.get(f"match_idx_server_{p}") for p in self.peers},
            "next_index": {p: raw.get(f"next_node_idx_server_{p}") for p in self.peers},
        }

    def _on_state_changed(self, old: int, new: int) -> None:  # in a tick
        names = {0: "follower", 1: "candidate", 2: "leader"}
        log.info("Raft state %s -> %s", names.get(old, old), names.get(new, new))
