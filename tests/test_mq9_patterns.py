"""The seed's eight agent patterns, end to end, against a node process with nats-py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

from tests.mq9 import collect, connect, create, list_ids, request, send
from tests.nodes import REPO, wait_for


async def test_1_result_picked_up_after_the_sub_agent_finished(node):
    orchestrator = await connect(node)
    box = await create(orchestrator, ttl=300)
    assert box["is_new"] is True and box["mail_id"].startswith("m-") and len(box["mail_id"]) >= 34

    sub_agent = await connect(node)
    stored = await send(sub_agent, box["mail_id"], b'{"result": 42}')
    assert stored["mail_id"] == box["mail_id"] and stored["msg_id"]
    await sub_agent.close()  # the sub-agent is gone before anyone listens

    sub = await orchestrator.subscribe(f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}.*")
    msg = await sub.next_msg(timeout=5)
    assert json.loads(msg.data) == {"result": 42}
    assert msg.headers["mq9-msg-id"] == stored["msg_id"] and msg.headers["mq9-delivery"] == "1"
    assert msg.subject == f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}.normal"
    await orchestrator.close()


async def test_2_task_queue_shared_by_three_workers_with_one_killed(node):
    boss = await connect(node)
    box = await create(boss, name="tasks.shared", ttl=600)
    mail_id = box["mail_id"]

    greedy = subprocess.Popen(
        [sys.executable, "-m", "tests.agents.greedy_worker", node.url, mail_id, "workers"],
        stdout=subprocess.PIPE, text=True, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert greedy.stdout.readline().strip() == "READY"
        await wait_for(lambda: _members(boss, mail_id, 1), 10, "the greedy worker to join")

        for i in range(300):
            await send(boss, mail_id, f"task-{i}".encode())
        held = greedy.stdout.readline().split()
        assert held[0] == "GOT"

        processed: dict[str, list[str]] = {}
        redelivered: list[str] = []

        async def make_worker(name: str):
            nc = await connect(node)

            async def on_task(msg) -> None:
                processed.setdefault(msg.data.decode(), []).append(name)
                if msg.headers["mq9-delivery"] != "1":
                    redelivered.append(msg.data.decode())
                await msg.ack()

            await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{mail_id}.*", queue="workers", cb=on_task)
            return nc

        w1 = await make_worker("w1")
        w2 = await make_worker("w2")
        greedy.send_signal(signal.SIGKILL)  # dies holding its tasks, unacknowledged
        greedy.wait(5)

        await wait_for(lambda: len(processed) == 300, 30, "all 300 tasks processed")
        await wait_for(lambda: _remaining(boss, mail_id, 0), 10, "the mailbox to be empty")
        assert sorted(processed) == sorted(f"task-{i}" for i in range(300))
        assert all(len(workers) == 1 for workers in processed.values()), "a task was processed twice"
        assert held[1] in redelivered, "the killed worker's task was not redelivered"
        assert {w for ws in processed.values() for w in ws} == {"w1", "w2"}
        await w1.close()
        await w2.close()
    finally:
        if greedy.poll() is None:
            greedy.kill()
    await boss.close()


async def _members(nc, mail_id: str, n: int) -> bool:
    info = await request(nc, f"$mq9.AI.MAILBOX.INFO.{mail_id}")
    return sum(len(g["members"]) for g in info["groups"]) == n


async def _remaining(nc, mail_id: str, n: int) -> bool:
    return len(await list_ids(nc, mail_id)) == n


async def test_3_worker_health_via_short_ttl_public_mailboxes(node):
    watcher = await connect(node)
    events: list[dict] = []

    async def on_event(msg) -> None:
        events.append(json.loads(msg.data))

    await watcher.subscribe("$mq9.AI.PUBLIC.LIST", cb=on_event)
    await watcher.flush()
    worker = await connect(node)
    await create(worker, name="health.worker-7", public=True, ttl=1, desc="worker 7 alive")
    await wait_for(lambda: any(e["event"] == "created" and e["mail_id"] == "health.worker-7" for e in events),
                   5, "created event")
    listed = await request(watcher, "$mq9.AI.PUBLIC.LIST")
    assert "health.worker-7" in [m["mail_id"] for m in listed["mailboxes"]]
    await wait_for(lambda: any(e["event"] == "expired" and e["mail_id"] == "health.worker-7" for e in events),
                   6, "expired event")
    listed = await request(watcher, "$mq9.AI.PUBLIC.LIST")
    assert "health.worker-7" not in [m["mail_id"] for m in listed["mailboxes"]]
    expired = [e for e in events if e["event"] == "expired" and e["mail_id"] == "health.worker-7"]
    assert len(expired) == 1 and expired[0]["desc"] == "worker 7 alive"
    await worker.close()
    await watcher.close()


async def test_4_alert_reaches_early_and_late_handlers(node):
    ops = await connect(node)
    box = await create(ops, name="alerts.disk", ttl=300)
    early = await ops.subscribe(f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}.*")
    await ops.flush()
    await send(ops, box["mail_id"], b"disk 95% full", "critical")
    assert (await early.next_msg(timeout=5)).data == b"disk 95% full"
    late_nc = await connect(node)
    late = await late_nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}.*")
    msg = await late.next_msg(timeout=5)
    assert msg.data == b"disk 95% full" and msg.subject.endswith(".critical")
    await ops.close()
    await late_nc.close()


async def test_5_offline_edge_agent_gets_commands_by_priority_on_reconnect(node):
    hq = await connect(node)
    box = await create(hq, name="edge.device-12", ttl=600)
    plan = [("low", "l1"), ("normal", "n1"), ("critical", "c1"), ("urgent", "u1"), ("normal", "n2"),
            ("critical", "c2"), ("low", "l2"), ("urgent", "u2"), (None, "n3")]
    for word, body in plan:
        await send(hq, box["mail_id"], body.encode(), word)
    edge = await connect(node)  # the device comes online
    sub = await edge.subscribe(f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}")
    got = [m.data.decode() for m in await collect(sub, len(plan))]
    assert got == ["c1", "c2", "u1", "u2", "n1", "n2", "n3", "l1", "l2"]
    await hq.close()
    await edge.close()


def _cli(node, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli", *args, "--server", node.url], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})


async def test_6_human_approval_through_a_private_reply_mailbox(node):
    agent = await connect(node)
    human_box = await create(agent, name="human.alice", ttl=600)
    reply_box = await create(agent, ttl=600)  # private: only the agent and whoever it tells know it
    await send(agent, human_box["mail_id"], f"approve deploy? reply to {reply_box['mail_id']}".encode(), "urgent")

    seen = await asyncio.to_thread(_cli, node, "sub", "human.alice", "--count", "1", "--json", "--ack")
    assert seen.returncode == 0, seen.stderr
    request_msg = json.loads(seen.stdout.splitlines()[0])
    assert request_msg["priority"] == "urgent" and reply_box["mail_id"] in request_msg["payload"]
    answer = await asyncio.to_thread(_cli, node, "send", reply_box["mail_id"], "approved", "--priority", "high")
    assert answer.returncode == 0, answer.stderr

    sub = await agent.subscribe(f"$mq9.AI.MAILBOX.MSG.{reply_box['mail_id']}.*")
    msg = await sub.next_msg(timeout=5)
    assert msg.data == b"approved" and msg.subject.endswith(".high")
    assert await list_ids(agent, "human.alice") == []  # the human's --ack consumed the request
    await agent.close()


async def test_7_async_request_reply_between_two_agents(node):
    a = await connect(node)
    b = await connect(node)
    inbox_b = await create(b, name="agent.b.inbox", ttl=600)
    served = asyncio.Event()

    async def serve(msg) -> None:
        request_body = json.loads(msg.data)
        await send(b, request_body["reply_to"], json.dumps({"answer": request_body["q"] * 2}).encode())
        await msg.ack()
        served.set()

    await b.subscribe(f"$mq9.AI.MAILBOX.MSG.{inbox_b['mail_id']}.*", queue="b", cb=serve)
    reply_box = await create(a, ttl=600)
    await send(a, inbox_b["mail_id"], json.dumps({"q": 21, "reply_to": reply_box["mail_id"]}).encode())
    sub = await a.subscribe(f"$mq9.AI.MAILBOX.MSG.{reply_box['mail_id']}.*")
    msg = await sub.next_msg(timeout=5)
    assert json.loads(msg.data) == {"answer": 42}
    await asyncio.wait_for(served.wait(), 5)
    await a.close()
    await b.close()


async def test_8_capability_discovery_then_send(node):
    provider = await connect(node)
    await create(provider, name="cap.translate.fr", public=True, desc="translate to French", ttl=600)
    await create(provider, name="cap.summarize", public=True, desc="summarize text", ttl=600)
    await create(provider, name="secret.internal", ttl=600)  # private: never listed
    consumer = await connect(node)
    listed = await request(consumer, "$mq9.AI.PUBLIC.LIST")
    by_desc = {m["desc"]: m["mail_id"] for m in listed["mailboxes"]}
    assert "secret.internal" not in [m["mail_id"] for m in listed["mailboxes"]]
    target = by_desc["translate to French"]
    await send(consumer, target, b"hello")
    sub = await provider.subscribe(f"$mq9.AI.MAILBOX.MSG.{target}.*")
    assert (await sub.next_msg(timeout=5)).data == b"hello"

    snapshot: list[dict] = []

    async def on_event(msg) -> None:
        snapshot.append(json.loads(msg.data))

    await consumer.subscribe("$mq9.AI.PUBLIC.LIST", cb=on_event)
    await wait_for(lambda: {"cap.translate.fr", "cap.summarize"} <= {e["mail_id"] for e in snapshot}, 5, "snapshot")
    assert all(e["event"] == "snapshot" for e in snapshot)
    await provider.close()
    await consumer.close()


async def test_the_cli_in_scripts_prints_bare_ids_and_fails_in_one_line(node):
    created = await asyncio.to_thread(_cli, node, "create", "--ttl", "60")  # stdout is a pipe here
    assert created.returncode == 0, created.stderr
    box = created.stdout.strip()
    assert box.startswith("m-") and "\n" not in box and " " not in box
    sent = await asyncio.to_thread(_cli, node, "send", box, "hello")
    assert sent.returncode == 0 and sent.stdout.strip().isdigit(), (sent.stdout, sent.stderr)
    too_big = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "node.cli", "send", box, "-", "--server", node.url],
        input=b"x" * ((1 << 20) + 1), capture_output=True, timeout=20, cwd=str(REPO))  # the body from stdin
    too_big.stderr = too_big.stderr.decode()
    assert too_big.returncode == 1 and "Traceback" not in too_big.stderr
    assert len(too_big.stderr.strip().splitlines()) == 1 and "max_payload" in too_big.stderr
