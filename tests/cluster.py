"""Helpers for multi-node tests: status, leader, convergence, the history checker.

Status, leader and convergence are the shared harness's (harness/raft_status.py), here
in the tests' terms: lists of NodeProcess, of which only the live ones are asked.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field

import nats

from harness import raft_status
from tests.nodes import NodeProcess


async def status(node: NodeProcess, timeout: float = 2.0) -> dict:
    return await raft_status.status(node.url, timeout)


def _live(nodes: list[NodeProcess]):
    return lambda: {n: n.url for n in nodes if n.alive()}


async def leader_of(nodes: list[NodeProcess], timeout: float = 15.0) -> NodeProcess:
    """The node all live nodes agree leads (waits for one)."""
    return await raft_status.wait_leader(_live(nodes), timeout)


async def wait_converged(nodes: list[NodeProcess], timeout: float = 30.0) -> list[dict]:
    """Wait until every live node applied the same index; return their statuses."""
    return list((await raft_status.wait_converged(_live(nodes), timeout)).values())


async def mailbox_lists(nodes: list[NodeProcess], mail_ids: list[str]) -> list[dict[str, list[str]]]:
    """Each live node's MAILBOX.LIST (msg ids) for each mailbox."""
    out = []
    for n in nodes:
        if not n.alive():
            continue
        nc = await raft_status.connect(n.url)
        try:
            out.append({mail_id: await raft_status.list_ids(nc, mail_id) for mail_id in mail_ids})
        finally:
            await nc.close()
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
