"""Faults under load, each judged by the history checker.

Every scenario runs 256 publishers (256 acknowledged publishes in flight, each retried
with its Nats-Msg-Id until acknowledged) against a three-node cluster, injects a fault,
lets the cluster recover, and then checks on every node: no acknowledged message lost,
none stored twice, each publisher's messages in order, the same MAILBOX.LIST on all
nodes, the same applied-log digest, and no follower log shrink without a term conflict.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tests import netns
from tests.cluster import History, leader_of, mailbox_lists, status, wait_converged
from tests.mq9 import connect, create, request
from tests.nodes import wait_for

BOXES = ["hist.a", "hist.b", "hist.c"]
PUBLISHERS = 256


async def _setup(nodes) -> History:
    await leader_of(nodes)
    nc = await connect(nodes[0])
    for box in BOXES:
        await create(nc, name=box, ttl=3600)
    await nc.close()
    return History(list(BOXES))


async def _load(history: History, nodes, fault, warmup: int = 1500, after: int = 1500) -> None:
    """Run the publishers; call `fault()` after `warmup` acks; stop `after` more acks later."""
    stop = asyncio.Event()
    runner = asyncio.create_task(history.run([n.url for n in nodes], PUBLISHERS, stop))
    await wait_for(lambda: len(history.acked) >= warmup, 60, f"{warmup} acknowledged publishes")
    await fault()
    target = len(history.acked) + after
    await wait_for(lambda: len(history.acked) >= target, 90, "the cluster to accept writes again")
    stop.set()
    await asyncio.wait_for(runner, 30)


async def _verify(history: History, nodes) -> None:
    for n in nodes:
        if not n.alive():
            n.start()
    await wait_converged(nodes, timeout=60)
    lists = await mailbox_lists(nodes, BOXES)
    assert all(lst == lists[0] for lst in lists), "nodes disagree on stored messages"
    history.check(lists[0])
    assert len(history.acked) > 0


async def test_sigkill_leader_under_load(make_cluster):
    nodes = make_cluster(3)
    history = await _setup(nodes)

    async def fault() -> None:
        (await leader_of(nodes)).kill()

    await _load(history, nodes, fault)
    await _verify(history, nodes)


async def test_sigkill_follower_under_load(make_cluster):
    nodes = make_cluster(3)
    history = await _setup(nodes)

    async def fault() -> None:
        leader = await leader_of(nodes)
        [n for n in nodes if n is not leader][0].kill()

    await _load(history, nodes, fault)
    await _verify(history, nodes)


async def test_sigkill_every_node_in_turn_with_restarts(make_cluster):
    nodes = make_cluster(3)
    history = await _setup(nodes)

    async def fault() -> None:
        for node in nodes:
            node.kill()
            target = len(history.acked) + 500
            await wait_for(lambda: len(history.acked) >= target, 60, f"writes with {node.name} down")
            node.start()
            await leader_of(nodes)

    await _load(history, nodes, fault)
    await _verify(history, nodes)


async def test_sigstop_sigcont_leader(make_cluster):
    nodes = make_cluster(3)
    history = await _setup(nodes)

    async def fault() -> None:
        leader = await leader_of(nodes)
        leader.pause()
        others = [n for n in nodes if n is not leader]
        try:
            await leader_of(others, timeout=20)  # the others elect a new leader meanwhile
            target = len(history.acked) + 500
            await wait_for(lambda: len(history.acked) >= target, 60, "writes while the old leader is frozen")
        finally:
            leader.resume()

    await _load(history, nodes, fault)
    await _verify(history, nodes)


async def test_kill_during_log_compaction(make_cluster):
    nodes = make_cluster(3, extra=["--compact-entries", "100", "--compact-seconds", "600"])
    history = await _setup(nodes)
    rng = random.Random(3)

    async def fault() -> None:
        for _ in range(3):  # compaction every 100 entries: kills land in and around snapshots
            victim = rng.choice(nodes)
            marker = victim.log_path.read_text().count("Snapshot written")
            await wait_for(lambda: victim.log_path.read_text().count("Snapshot written") > marker, 60,
                           f"a snapshot on {victim.name}")
            victim.kill()
            victim.start()
            await leader_of(nodes)

    await _load(history, nodes, fault)
    await _verify(history, nodes)


async def test_overlapping_appends_never_shrink_a_follower_log(make_cluster):
    """Large batches through a follower make the leader split and resend appends (64 KiB
    messages, late replies): stock PySyncObj followers truncated acknowledged entries here."""
    nodes = make_cluster(3)
    await leader_of(nodes)
    leader = await leader_of(nodes)
    follower = [n for n in nodes if n is not leader][0]
    nc = await connect(follower)
    await create(nc, name="overlap.box", ttl=3600)
    body = b"x" * 2048
    sem = asyncio.Semaphore(3000)

    async def one(i: int) -> None:
        async with sem:
            await nc.request("$mq9.AI.MAILBOX.MSG.overlap.box", body, timeout=30,
                             headers={"Nats-Msg-Id": f"o{i}"})

    await asyncio.gather(*(one(i) for i in range(20_000)))
    views = await wait_converged(nodes, timeout=60)
    assert all(v["log_shrinks"] == 0 for v in views)
    for n in nodes:
        c = await connect(n)
        info = await request(c, "$mq9.AI.MAILBOX.INFO.overlap.box")
        assert info["total"] == 20_000, (n.name, info["total"])
        await c.close()
    fixes = sum(v["next_index_fixes"] + v["stash_restores"] for v in views)
    print(f"guards used: {fixes} (next-index fixes + stash restores)")
    await nc.close()


@pytest.mark.skipif(not netns.available(), reason="needs root, iproute2 and iptables")
async def test_partitioned_leader_answers_503_and_loses_nothing(tmp_path):
    from tests.conftest import _started

    lab = netns.NetnsLab(tmp_path, 3)
    _started.extend(lab.nodes)
    try:
        for node in lab.nodes:
            node.start(wait=False)
        for node in lab.nodes:
            node.wait_ready()
        history = await _setup(lab.nodes)
        minority_replies: list[dict] = []

        async def fault() -> None:
            old = await leader_of(lab.nodes)
            lab.partition(old)
            others = [n for n in lab.nodes if n is not old]
            await leader_of(others, timeout=20)
            nc = await connect(old)  # a client that can still reach the old leader
            for i in range(3):
                started = asyncio.get_running_loop().time()
                reply = await nc.request("$mq9.AI.MAILBOX.MSG.hist.a", b"minority-%d" % i, timeout=5)
                import json

                minority_replies.append(json.loads(reply.data))
                assert asyncio.get_running_loop().time() - started < 3.0
            await nc.close()
            target = len(history.acked) + 500
            await wait_for(lambda: len(history.acked) >= target, 60, "writes on the majority side")
            lab.heal(old)

        await _load(history, lab.nodes, fault)
        assert all(r.get("code") == 503 for r in minority_replies), minority_replies
        await _verify(history, lab.nodes)
        s = await status(lab.nodes[0])
        assert s["has_quorum"]
    finally:
        lab.close()
        for n in lab.nodes:
            _started.remove(n)
