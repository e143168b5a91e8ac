"""Commands and deterministic apply, on real RocksDB stores (no node process needed)."""

from __future__ import annotations

import random

import msgspec

from hypothesis import given, settings, strategies as st

from cluster import commands as c
from cluster import keys, records
from cluster.effects import Created, Failure, MailboxExpired, MessageAssigned, MessageStored, Stored
from cluster.state import State
from cluster.store import Store


def _state(tmp_path, name="db") -> State:
    return State(Store(str(tmp_path / name)))


def _dump(state: State) -> list[tuple[bytes, bytes]]:
    return list(state.store.scan(b"", b"\xff" * 8))


_numbers = iter(range(1, 1 << 30))


def _batch(t: int, *cmds, origin="n1", number=None) -> c.Batch:
    return c.Batch(t, origin, number if number is not None else next(_numbers), list(cmds))


def test_golden_bytes_of_commands():
    """Tags and field order are part of the log format: these bytes must never change."""
    batch = _batch(1000, c.CreateMailbox("a.b", 60, True, "a.b", "d", 30000, 64),
                   c.StoreMessage("a.b", 3, None, b"x", "id1"), c.Ack("a.b", 7, c.NAK, "g"),
                   c.DeleteMessage("a.b", 7), c.GroupJoin("a.b", "g", "m", "n", 15), c.GroupLeave("a.b", "g", "m"),
                   c.Tick(), c.NodeRestarted("n", "b"), c.NodeDown("n"), number=1)
    assert c.encode_batch(batch).hex() == (
        "94cd03e8a26e3101999a01a3612e623cc3a3612e62a164cd753040a0909602a3612e6203c0c40178a369643195"
        "03a3612e620701a1679304a3612e62079605a3612e62a167a16da16e0f9406a3612e62a167a16d91079508"
        "a16ea162a0a09209a16e"
    )
    assert c.decode_batch(c.encode_batch(batch)) == batch


def test_entries_written_before_a_field_was_appended_still_decode():
    """NodeRestarted gained client_url and name; a log written before that must still apply."""
    old = bytes.fromhex("9405a26e31019193" "08a16ea162")
    assert c.decode_batch(old).commands == [c.NodeRestarted("n", "b", "", "")]


def test_creates_and_mailboxes_written_before_owner_and_readers_still_decode():
    """CreateMailbox and the Mailbox record gained owner and readers (mailbox ownership)."""
    old = bytes.fromhex("9405a26e3101919801a3612e623cc3a3612e62a164cd753040")
    assert c.decode_batch(old).commands == [c.CreateMailbox("a.b", 60, True, "a.b", "d", 30000, 64, "", ())]
    record = records.Mailbox("a.b", True, "a.b", "d", 60, 1, 2, 30000, 64, 7)
    old_record = msgspec.msgpack.encode(["a.b", True, "a.b", "d", 60, 1, 2, 30000, 64, 7])
    assert records.decode_mailbox(old_record) == record and record.owner == "" and record.readers == ()


def test_key_layout_knows_every_priority_level():
    assert keys.LEVELS == c.LEVELS
    assert {keys.message("m", level, 5)[-9] for level in range(c.LEVELS)} == set(range(c.LEVELS))


def test_encoding_is_stable():
    batch = _batch(5, c.StoreMessage("box", 0, b"NATS/1.0\r\n\r\n", b"payload", None), number=1)
    blob = c.encode_batch(batch)
    assert blob == bytes.fromhex("9405a26e3101919602a3626f7800c40c4e4154532f312e300d0a0d0ac4077061796c6f6164c0")


def test_apply_is_deterministic_and_replays_are_skipped(tmp_path):
    log = _random_log(random.Random(7), 300)
    a, b = _state(tmp_path, "a"), _state(tmp_path, "b")
    for index, batch in enumerate(log, start=2):
        ra = a.apply_batch(batch, index)
        rb = b.apply_batch(batch, index)
        assert ra == rb
    assert _dump(a) == _dump(b)
    before = _dump(a)
    for index, batch in enumerate(log, start=2):  # a restart replays the journal
        assert a.apply_batch(batch, index) is None
    assert _dump(a) == before
    a.store.close()
    reopened = State(Store(str(tmp_path / "a")))
    assert reopened.applied_index == len(log) + 1
    for index, batch in enumerate(log, start=2):
        assert reopened.apply_batch(batch, index) is None


def _random_log(rng: random.Random, n: int) -> list[c.Batch]:
    boxes = ["q.a", "q.b", "q.c"]
    members = [f"node{k}/boot/{k}/1" for k in range(3)]
    out = []
    t = 1_000_000
    seqs: list[tuple[str, int]] = []
    for i in range(n):
        t += rng.randint(0, 400)
        cmds = []
        for pos in range(rng.randint(1, 6)):
            roll = rng.random()
            box = rng.choice(boxes)
            if roll < 0.1:
                cmds.append(c.CreateMailbox(box, rng.choice([0, 2, 60]), rng.random() < 0.5, box, "", 500, 3))
            elif roll < 0.6:
                cmds.append(c.StoreMessage(box, rng.randrange(5), None, f"m{i}.{pos}".encode(),
                                           rng.choice([None, f"d{rng.randrange(20)}"])))
                seqs.append((box, keys.seq_for(i + 2, pos)))
            elif roll < 0.7 and seqs:
                b, s = rng.choice(seqs)
                cmds.append(c.Ack(b, s, rng.choice([c.ACK, c.NAK, c.WPI, c.TERM]), rng.choice([None, "g"])))
            elif roll < 0.8:
                cmds.append(c.GroupJoin(box, "g", rng.choice(members), "node", c.ALL_LEVELS))
            elif roll < 0.85:
                cmds.append(c.GroupLeave(box, "g", rng.choice(members)))
            elif roll < 0.9 and seqs:
                b, s = rng.choice(seqs)
                cmds.append(c.DeleteMessage(b, s))
            else:
                cmds.append(c.Tick())
        out.append(c.Batch(t, "n", i, cmds))
    return out


@given(st.integers(min_value=0, max_value=10_000))
@settings(max_examples=15, deadline=None)
def test_any_log_applies_identically(tmp_path_factory, seed):
    tmp = tmp_path_factory.mktemp("det")
    log = _random_log(random.Random(seed), 60)
    a, b = _state(tmp, "a"), _state(tmp, "b")
    for index, batch in enumerate(log, start=2):
        assert a.apply_batch(batch, index) == b.apply_batch(batch, index)
    assert _dump(a) == _dump(b)
    a.store.close()
    b.store.close()


def test_time_comes_from_the_log_and_never_goes_back(tmp_path):
    s = _state(tmp_path)
    s.apply_batch(_batch(10_000, c.CreateMailbox("t.box", 5, False, "", "", 1000, 1)), 2)
    s.apply_batch(_batch(9_000, c.Tick()), 3)  # a submitter with a slow clock
    assert s.now_ms == 10_000
    results, effects = s.apply_batch(_batch(15_000, c.Tick()), 4)
    assert [type(e) for e in effects] == [MailboxExpired]
    results, _ = s.apply_batch(_batch(15_001, c.StoreMessage("t.box", c.NORMAL, None, b"x")), 5)
    assert isinstance(results[0], Failure) and results[0].code == 404


def test_store_dedup_and_priority_order(tmp_path):
    s = _state(tmp_path)
    s.apply_batch(_batch(1, c.CreateMailbox("p.box", 0, False, "", "", 1000, 4)), 2)
    (r1, r2, r3, r4), effects = s.apply_batch(_batch(2,
        c.StoreMessage("p.box", c.WORD_INDEX["low"], None, b"l"),
        c.StoreMessage("p.box", c.WORD_INDEX["critical"], None, b"c", "x"),
        c.StoreMessage("p.box", c.WORD_INDEX["critical"], None, b"c-again", "x"),
        c.StoreMessage("p.box", c.WORD_INDEX["high"], None, b"h")), 3)
    assert isinstance(r1, Stored) and r3.duplicate and r3.seq == r2.seq
    assert [e.payload for e in effects if isinstance(e, MessageStored)] == [b"l", b"c", b"h"]
    order = [k for k, _ in s.store.scan(keys.messages("p.box"), keys.end_of(keys.messages("p.box")))]
    assert [keys.split_message(k)[1] for k in order] == [r2.seq, r4.seq, r1.seq]


def test_queue_group_assignment_limits_and_redelivery(tmp_path):
    s = _state(tmp_path)
    s.apply_batch(_batch(1, c.CreateMailbox("w.box", 0, False, "", "", 1000, 2)), 2)
    _, eff = s.apply_batch(_batch(2, c.GroupJoin("w.box", "g", "A", "n1"), c.GroupJoin("w.box", "g", "B", "n2")), 3)
    assert eff == []
    _, eff = s.apply_batch(_batch(3, *[c.StoreMessage("w.box", c.NORMAL, None, b"%d" % i) for i in range(6)]), 4)
    assigned = [e for e in eff if isinstance(e, MessageAssigned)]
    assert [e.member for e in assigned] == ["A", "B", "A", "B"]  # max_in_flight 2 each; 2 wait
    first = assigned[0]
    _, eff = s.apply_batch(_batch(4, c.Ack("w.box", first.seq, c.ACK, "g")), 5)
    assert [(e.member, e.delivery) for e in eff if isinstance(e, MessageAssigned)] == [("A", 1)]
    _, eff = s.apply_batch(_batch(5, c.GroupLeave("w.box", "g", "B")), 6)
    moved = [e for e in eff if isinstance(e, MessageAssigned)]
    assert moved == []  # A is full (2 in flight): B's two wait for redelivery
    _, eff = s.apply_batch(_batch(1500, c.Tick()), 7)  # A's deadlines pass (ack_wait 1 s)
    again = [e for e in eff if isinstance(e, MessageAssigned)]
    assert again and all(e.member == "A" for e in again)
    assert sorted(e.delivery for e in again) == [2, 2]  # B's two come first: older seqs at the same level


def test_node_restart_drops_members_of_older_boots(tmp_path):
    s = _state(tmp_path)
    s.apply_batch(_batch(1, c.CreateMailbox("r.box", 0, False, "", "", 10_000, 5)), 2)
    s.apply_batch(_batch(2, c.GroupJoin("r.box", "g", "n1/old/1/1", "n1"), c.StoreMessage("r.box", 2, None, b"x")), 3)
    _, eff = s.apply_batch(_batch(3, c.NodeRestarted("n1", "new"), c.GroupJoin("r.box", "g", "n1/new/1/1", "n1")), 4)
    assert [(e.member, e.delivery) for e in eff if isinstance(e, MessageAssigned)] == [("n1/new/1/1", 2)]


def test_apply_never_raises_on_odd_commands(tmp_path):
    s = _state(tmp_path)
    results, _ = s.apply_batch(_batch(1,
        c.StoreMessage("nobox", 99, None, b""), c.Ack("nobox", 1, 9), c.DeleteMessage("", 0),
        c.GroupLeave("x", "y", "z"), c.CreateMailbox("", -1, False, "", "", 0, 0),
        c.CreateMailbox("ok.box", 0, False, "", "", 1, 1), c.StoreMessage("ok.box", 99, None, b"")), 2)
    assert [getattr(r, "code", None) for r in results] == [404, 404, 404, 404, 400, None, 400]
    assert isinstance(results[5], Created)


def test_a_resent_batch_is_applied_once(tmp_path):
    s = _state(tmp_path)
    s.apply_batch(_batch(1, c.CreateMailbox("dup.box", 0, False, "", "", 1000, 4)), 2)
    batch = _batch(2, c.StoreMessage("dup.box", c.NORMAL, None, b"once"), origin="nodeA", number=77)
    first = s.apply_batch(batch, 3)
    again = s.apply_batch(batch, 4)  # the same batch committed twice (resent after a leader change)
    assert isinstance(first[0][0], Stored) and again == ([], [])
    assert len(list(s.store.scan(keys.messages("dup.box"), keys.end_of(keys.messages("dup.box"))))) == 1
    assert s.applied_index == 4


def _group_log(rng: random.Random, n: int) -> list[c.Batch]:
    """Queue-group traffic: stores at every level, two groups with different level filters,
    acks, NAKs, deletes ahead of the cursors, members leaving, deadlines passing."""
    members = [f"node{k}/boot/{k}/1" for k in range(3)]
    out = [c.Batch(1_000_000, "n", 0, [c.CreateMailbox("wq", 0, False, "wq", "", 700, 2)])]
    t = 1_000_000
    seqs: list[int] = []
    for i in range(1, n):
        t += rng.randint(0, 300)
        cmds = []
        for pos in range(rng.randint(1, 8)):
            roll = rng.random()
            if roll < 0.45:
                cmds.append(c.StoreMessage("wq", rng.randrange(5), None, b"m%d.%d" % (i, pos)))
                seqs.append(keys.seq_for(i + 2, pos))
            elif roll < 0.65 and seqs:
                group = rng.choice(["g", "h#3"])
                cmds.append(c.Ack("wq", rng.choice(seqs[-40:]), rng.choice([c.ACK, c.ACK, c.NAK, c.WPI, c.TERM]), group))
            elif roll < 0.75:
                group, levels = rng.choice([("g", c.ALL_LEVELS), ("h#3", 3)])
                cmds.append(c.GroupJoin("wq", group, rng.choice(members), "node", levels))
            elif roll < 0.8:
                cmds.append(c.GroupLeave("wq", rng.choice(["g", "h#3"]), rng.choice(members)))
            elif roll < 0.88 and seqs:
                cmds.append(c.DeleteMessage("wq", rng.choice(seqs[-20:])))  # often not handed out yet
            else:
                cmds.append(c.Tick())
        out.append(c.Batch(t, "n", i, cmds))
    return out


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from([1, 3, 256]))
@settings(max_examples=16, deadline=None)
def test_in_memory_tails_hand_out_what_rocksdb_would(tmp_path_factory, seed, expire_per_batch):
    """Queue groups find their next message in an in-memory tail (cluster/tails.py), and
    their next ack deadline from in-flight entries kept in deadline order. Against a state
    that always asks RocksDB, one whose tails keep resetting, and one reloaded every few
    batches (its tails and deadline heap start again), every result, effect and stored
    byte must be the same; also when only a few late messages are taken back per batch."""
    tmp = tmp_path_factory.mktemp("tails")
    log = _group_log(random.Random(seed), 120)
    limit = {"expire_per_batch": expire_per_batch}
    states = [State(Store(str(tmp / "tails")), **limit), State(Store(str(tmp / "rocks")), tail_max=0, **limit),
              State(Store(str(tmp / "tiny")), tail_max=3, **limit), State(Store(str(tmp / "reload")), **limit)]
    assigned = 0
    for index, batch in enumerate(log, start=2):
        if index % 7 == 0:
            states[3].reset()
        outs = [s.apply_batch(batch, index) for s in states]
        assert all(o == outs[0] for o in outs[1:]), f"index {index}"
        assigned += sum(isinstance(e, MessageAssigned) for e in outs[0][1])
    assert assigned > 20  # the log really exercised hand-outs
    dumps = [_dump(s) for s in states]
    assert all(d == dumps[0] for d in dumps[1:])
    for s in states:
        s.store.close()


def test_ack_deadlines_take_one_heap_entry_per_group_not_per_message(tmp_path):
    """Every hand-out has an ack deadline; acknowledged ones must not pile up in memory
    until their time (they did: one heap entry per hand-out, 30 s of them under load)."""
    state = _state(tmp_path)
    state.apply_batch(_batch(1000, c.CreateMailbox("wq", 0, False, "wq", "", 30_000, 10),
                             c.GroupJoin("wq", "g", "n/b/1/1", "n")), 2)
    index, handed = 3, 0
    pending: list[int] = []
    for i in range(200):
        cmds = [c.StoreMessage("wq", c.NORMAL, None, b"task") for _ in range(5)]
        cmds += [c.Ack("wq", seq, c.ACK, "g") for seq in pending]
        _, effects = state.apply_batch(_batch(1000 + i, *cmds), index)
        index += 1
        pending = [e.seq for e in effects if isinstance(e, MessageAssigned)]
        handed += len(pending)
    assert handed >= 900
    assert len(state._deadlines) <= 2


def test_in_flight_pages_hold_what_per_message_keys_held_and_old_stores_migrate(tmp_path):
    """In-flight messages live in pages (one key per 64 positions of a storing entry), not
    one key per message. A store written before pages (per-message F keys) is turned into
    pages when it is opened, and then applies the rest of the log exactly as a store that
    always had pages."""
    log = _group_log(random.Random(11), 160)
    new, old = _state(tmp_path, "new"), _state(tmp_path, "old")
    for index, batch in enumerate(log[:100], start=2):
        assert new.apply_batch(batch, index) == old.apply_batch(batch, index)
    pages = list(old.store.scan(keys.INFLIGHT_PREFIX, keys.end_of(keys.INFLIGHT_PREFIX)))
    assert pages and not list(old.store.scan(keys.LEGACY_INFLIGHT_PREFIX, keys.end_of(keys.LEGACY_INFLIGHT_PREFIX)))
    # rewrite `old` as the earlier version stored it: one F key per in-flight message
    txn = old.store.begin()
    entries = 0
    for key, value in pages:
        mail_id, name, _ = keys.split_inflight(key)
        for seq, entry in records.decode_inflight_page(value).items():
            txn.put(b"F%s\0%s\0" % (mail_id.encode(), name.encode()) + keys.pack_u64(seq), records.encode(entry))
            entries += 1
        txn.delete(key)
    old.store.write(txn)
    assert entries > 5
    old.reset()  # as at a restart
    assert _dump(old) == _dump(new)
    for index, batch in enumerate(log[100:], start=102):
        assert new.apply_batch(batch, index) == old.apply_batch(batch, index), f"index {index}"
    assert _dump(old) == _dump(new)
    new.store.close()
    old.store.close()


@given(st.integers(min_value=0, max_value=10_000))
@settings(max_examples=12, deadline=None)
def test_work_queue_traffic_applies_the_same_with_caches_reloads_and_rocksdb(tmp_path_factory, seed):
    """The shape of a busy work queue: tens of stores and acknowledgements of what was
    handed out per batch (apply takes runs of them in bulk), with NAKs, +WPI, +TERM,
    Nats-Msg-Ids, deletes, members leaving and joining, one or two groups. A state that
    keeps its caches, one reloaded every few batches and one that always asks RocksDB
    must give the same results, effects and bytes."""
    rng = random.Random(seed)
    tmp = tmp_path_factory.mktemp("wq")
    states = [_state(tmp, "cached"), _state(tmp, "reload"), State(Store(str(tmp / "rocks")), tail_max=0)]
    members = [f"n{k}/b/{k}/1" for k in range(rng.randint(1, 4))]
    cmds: list = [c.CreateMailbox("wq", 0, False, "wq", "", rng.choice([200, 5000]), rng.choice([2, 7, 50]))]
    for m in members:
        cmds.append(c.GroupJoin("wq", "g", m, "n"))
        if seed % 3 == 0:
            cmds.append(c.GroupJoin("wq", "h#3", m, "n", 3))
    held: list[tuple[str, int]] = []
    t, handed = 1000, 0
    for index in range(2, 80):
        if index > 2:
            t += rng.randint(0, 120)
            cmds = [c.StoreMessage("wq", rng.choice([3, 3, 3, 0, 1, 2, 4]), None, b"t",
                                   rng.choice([None] * 9 + [f"d{rng.randrange(30)}"])) for _ in range(rng.randint(0, 40))]
            rng.shuffle(held)
            cut = rng.randint(0, len(held))
            for group, seq in held[:cut]:
                kind = c.ACK if rng.random() < 0.85 else rng.choice([c.NAK, c.WPI, c.TERM])
                cmds.append(c.Ack("wq", seq, kind, group))
            held = held[cut:]
            if rng.random() < 0.1:
                cmds.append(c.GroupLeave("wq", "g", rng.choice(members)))
            if rng.random() < 0.1:
                cmds.append(c.GroupJoin("wq", "g", rng.choice(members), "n"))
            if rng.random() < 0.05 and held:
                cmds.append(c.DeleteMessage("wq", rng.choice(held)[1]))
        if index % 5 == 0:
            states[1].reset()
        outs = [s.apply_batch(c.Batch(t, "n", index, cmds), index) for s in states]
        assert all(o == outs[0] for o in outs[1:]), f"index {index}"
        for e in outs[0][1]:
            if isinstance(e, MessageAssigned):
                held.append((e.group, e.seq))
                handed += 1
    assert handed > 20
    dumps = [_dump(s) for s in states]
    assert all(d == dumps[0] for d in dumps[1:])
    for s in states:
        s.store.close()
