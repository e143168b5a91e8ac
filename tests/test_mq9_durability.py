"""kill -9 during acknowledged publishes: after restart, every acknowledged message is there."""

from __future__ import annotations

import asyncio

from tests.mq9 import connect, create, list_ids, request
from tests.nodes import wait_for


async def _read_all(nc, mail_id: str, n: int) -> list:
    sub = await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{mail_id}")
    out = [await sub.next_msg(timeout=10) for _ in range(n)]
    await sub.unsubscribe()
    return out


async def test_kill_9_during_acknowledged_publishes(make_node):
    node = make_node("durable").start()
    nc = await connect(node, allow_reconnect=False)
    boxes = [(await create(nc, name=f"durable.box{i}", ttl=3600))["mail_id"] for i in range(3)]
    acked: dict[str, list[tuple[int, bytes]]] = {b: [] for b in boxes}
    sent = 0
    stop = asyncio.Event()

    async def publisher(k: int) -> None:
        nonlocal sent
        i = 0
        while not stop.is_set():
            box = boxes[(k + i) % 3]
            body = f"p{k}-{i}".encode()
            i += 1
            try:
                msg = await nc.request(f"$mq9.AI.MAILBOX.MSG.{box}", body, timeout=3)
            except Exception:
                return  # the node died under us: this one is not acknowledged
            reply = msg.data
            if b"msg_id" in reply:
                acked[box].append((int(reply.split(b'"msg_id":"')[1].split(b'"')[0]), body))
                sent += 1

    tasks = [asyncio.create_task(publisher(k)) for k in range(64)]
    await wait_for(lambda: sent >= 3000, 60, "3000 acknowledged publishes")
    node.kill()  # SIGKILL in the middle of the stream
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await nc.close()

    node.start()
    nc = await connect(node)
    for box in boxes:
        ids = [int(x) for x in await list_ids(nc, box)]
        assert ids == sorted(ids), "delivery order (FIFO within a level) broken"
        assert len(ids) == len(set(ids)), "a message is stored twice"
        missing = {seq for seq, _ in acked[box]} - set(ids)
        assert not missing, f"{len(missing)} acknowledged messages lost in {box}"
        bodies = [m.data for m in await _read_all(nc, box, len(ids))]
        assert len(bodies) == len(set(bodies)), "a publish was applied twice"
        by_seq = dict(acked[box])
        got = dict(zip(ids, bodies))
        assert all(got[seq] == body for seq, body in by_seq.items())
    info = await request(nc, f"$mq9.AI.MAILBOX.INFO.{boxes[0]}")
    assert info["ttl"] == 3600
    await nc.close()


async def test_restart_keeps_mailboxes_and_groups_work_again(make_node):
    node = make_node("restart-mq9").start()
    nc = await connect(node, allow_reconnect=False)
    box = (await create(nc, name="restart.jobs", ttl=3600))["mail_id"]
    await create(nc, name="restart.public", public=True, ttl=3600, desc="still here")
    for i in range(10):
        await nc.request(f"$mq9.AI.MAILBOX.MSG.{box}", str(i).encode(), timeout=3)
    got = []

    async def worker(msg):
        got.append(msg.data)  # takes, never acks: in flight when the node dies

    await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*", queue="w", cb=worker)
    await nc.flush()
    await wait_for(lambda: len(got) == 10, 10, "the worker to hold all 10 tasks")
    node.kill()
    await nc.close()
    node.start()
    nc = await connect(node)
    listed = await request(nc, "$mq9.AI.PUBLIC.LIST")
    assert [m["mail_id"] for m in listed["mailboxes"]] == ["restart.public"]
    again = []
    done = asyncio.Event()

    async def worker2(msg):
        again.append((msg.data, msg.headers["mq9-delivery"]))
        await msg.ack()
        if len(again) == 10:
            done.set()

    await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*", queue="w", cb=worker2)
    await asyncio.wait_for(done.wait(), 10)  # the dead member's tasks came back
    assert sorted(d for d, _ in again) == sorted(str(i).encode() for i in range(10))
    assert all(n == "2" for _, n in again), again
    await nc.close()


async def test_restart_hands_out_the_backlog_past_a_groups_cursor(make_node):
    """A group's cursor outlives a restart, and so does what lies past it: with two in
    flight and eight waiting when the node dies, a new member gets all ten. (A restarted
    node used to see no stored messages past the cursor until a new one arrived.)"""
    node = make_node("restart-backlog").start()
    nc = await connect(node, allow_reconnect=False)
    box = (await create(nc, name="restart.backlog", ttl=3600, max_in_flight=2))["mail_id"]
    for i in range(10):
        await nc.request(f"$mq9.AI.MAILBOX.MSG.{box}", b"task %d" % i, timeout=3)
    held = []

    async def holder(msg):
        held.append(msg.data)  # never acks: its two stay in flight

    await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*", queue="w", cb=holder)
    await wait_for(lambda: len(held) == 2, 10, "the first member to hold two tasks")
    node.kill()
    await nc.close()
    node.start()
    nc = await connect(node)
    got = []
    done = asyncio.Event()

    async def worker(msg):
        got.append(msg.data)
        await msg.ack()
        if len(got) == 10:
            done.set()

    await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*", queue="w", cb=worker)
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await nc.close()
    assert sorted(got) == sorted(b"task %d" % i for i in range(10))
