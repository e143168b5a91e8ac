"""Helpers for multi-node tests: status, leader, convergence, the history checker."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field

import nats

from tests.nodes import NodeProcess, wait_for


async def status(node: NodeProcess, timeout: float = 2.0) -> dict:
    nc = await nats.connect(node.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        msg = await nc.request("$mq9.AI.NODE.STATUS", b"", timeout=timeout)
        return json.loads(msg.data)
    finally:
        await nc.close()


async def leader_of(nodes: list[NodeProcess], timeout: float = 15.0) -> NodeProcess:
    """The node all live nodes agree leads (waits for one)."""
    found: list[NodeProcess] = []

    async def agreed() -> bool:
        views = []
        for n in nodes:
            if n.alive():
                try:
                    views.append((n, await status(n)))
                except Exception:
                    return False
        leaders = [n for n, s in views if s["state"] == "leader"]
        if len(leaders) != 1:
            return False
        if not all(s["leader"] == leaders[0].raft_address for _, s in views):
            return False
        found[:] = leaders
        return True

    await wait_for(agreed, timeout, "one agreed leader")
    return found[0]


async def wait_converged(nodes: list[NodeProcess], timeout: float = 30.0) -> list[dict]:
    """Wait until every live node applied the same index; return their statuses."""
    result: list[dict] = []

    async def same() -> bool:
        views = [await status(n) for n in nodes if n.alive()]
        indexes = {v["applied_index"] for v in views}
        if len(indexes) == 1 and len({v["state_index"] for v in views}) == 1 \
                and all(v["commit_index"] == v["applied_index"] for v in views):
            result[:] = views
            return True
        return False

    await wait_for(same, timeout, "all nodes to apply the same index", interval=0.1)
    digests = {v["applied_digest"] for v in result}
    assert len(digests) == 1, f"same applied index, different applied logs: {result}"
    assert all(v["log_shrinks"] == 0 for v in result), result
    return result


async def mailbox_lists(nodes: list[NodeProcess], mail_ids: list[str]) -> list[dict[str, list[str]]]:
    """Each live node's MAILBOX.LIST (msg ids) for each mailbox."""
    out = []
    for n in nodes:
        if not n.alive():
            continue
        nc = await nats.connect(n.url, allow_reconnect=False)
        lists = {}
        for mail_id in mail_ids:
            ids: list[str] = []
            body = b"{}"
            while True:  # page through long lists
                reply = json.loads((await nc.request(f"$mq9.AI.MAILBOX.LIST.{mail_id}", body, timeout=5)).data)
                ids += [m["msg_id"] for m in reply.get("messages", [])]
                if not reply.get("truncated"):
                    break
                body = json.dumps({"after": ids[-1]}).encode()
            lists[mail_id] = ids
        await nc.close()
        out.append(lists)
    return out


@dataclass
class History:
    """Acknowledged publishes, for checking what the cluster kept after faults."""

    boxes: list[str]
    acked: dict[str, tuple[str, int]] = field(default_factory=dict)  # msg_id -> (publisher, i)
    errors: int = 0
    attempts: int = 0

    async def run(self, urls: list[str], publishers: int, stop: asyncio.Event, words=("critical", "normal", "low")) -> None:
        # one connection per node (each failing over to the others), publishers spread over them
        conns = [await nats.connect(servers=[url] + [u for u in urls if u != url], dont_randomize=True,
                                    max_reconnect_attempts=-1, reconnect_time_wait=0.1, connect_timeout=2)
                 for url in urls]

        async def publisher(k: int) -> None:
            nc = conns[k % len(conns)]
            rng = random.Random(k)
            i = 0
            while not stop.is_set():
                box = self.boxes[k % len(self.boxes)]
                word = words[(k // len(self.boxes)) % len(words)]
                msg_id = f"p{k}-{i}"
                while not stop.is_set():  # retry the same message (same Nats-Msg-Id) until acknowledged
                    self.attempts += 1
                    try:
                        reply = await nc.request(f"$mq9.AI.MAILBOX.MSG.{box}.{word}", msg_id.encode(), timeout=4,
                                                 headers={"Nats-Msg-Id": msg_id})
                        body = json.loads(reply.data)
                    except Exception:
                        self.errors += 1
                        await asyncio.sleep(0.05 + rng.random() * 0.05)
                        continue
                    if "msg_id" in body:
                        self.acked[body["msg_id"]] = (f"p{k}", i)
                        break
                    self.errors += 1
                    await asyncio.sleep(0.05)
                i += 1

        await asyncio.gather(*(publisher(k) for k in range(publishers)))
        for nc in conns:
            await nc.close()

    def check(self, lists: dict[str, list[str]]) -> None:
        """None lost, none duplicated, each publisher's messages in order within a mailbox."""
        stored = [m for ids in lists.values() for m in ids]
        assert len(stored) == len(set(stored)), "a message is stored twice"
        missing = set(self.acked) - set(stored)
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
        for ids in lists.values():
            last: dict[str, int] = {}
            for msg_id in ids:  # LIST is delivery order: by level, then FIFO
                who = self.acked.get(msg_id)
                if who is None:
                    continue
                publisher, i = who
                assert i > last.get(publisher, -1), f"{publisher}'s messages out of order"
                last[publisher] = i
