"""Reads see every acknowledged write, on any node (contract section 7): a message stored
through one node is in a LIST, INFO and PUBLIC.LIST sent to another node right after the
acknowledgement, thousands of times, while other load runs. And a node cut off from the
majority answers reads 503 instead of possibly stale data."""

from __future__ import annotations

import asyncio
import json

from tests.mq9 import connect, create, request, send
from tests.nodes import wait_for


async def test_a_write_acknowledged_on_one_node_is_read_on_another_at_once(make_cluster):
    n1, n2, n3 = make_cluster(3)
    writer, reader, noise = await connect(n1), await connect(n2), await connect(n3)
    stop = asyncio.Event()

    async def background() -> None:  # other writes keep the log moving on a third node
        i = 0
        while not stop.is_set():
            await send(noise, "ryw.noise", f"noise {i}".encode())
            i += 1

    try:
        await create(writer, name="ryw.box", ttl=600, public=True)
        await create(writer, name="ryw.noise", ttl=600)
        load = asyncio.create_task(background())
        missed = []
        rounds = 1500
        for i in range(rounds):
            sent = await send(writer, "ryw.box", f"m{i}".encode())
            if i % 3 == 0:
                listed = await request(reader, "$mq9.AI.MAILBOX.LIST.ryw.box", json.dumps({"after": None}).encode())
                if sent["msg_id"] not in [m["msg_id"] for m in listed.get("messages", [])] and not listed.get("truncated"):
                    missed.append(("LIST", i))
            elif i % 3 == 1:
                info = await request(reader, "$mq9.AI.MAILBOX.INFO.ryw.box")
                if info.get("total", 0) < i + 1:
                    missed.append(("INFO", i, info.get("total")))
            elif i % 50 == 2:
                box = f"ryw.new{i}"
                await create(writer, name=box, public=True, ttl=600)
                listing = await request(reader, "$mq9.AI.PUBLIC.LIST")
                if box not in [m["mail_id"] for m in listing["mailboxes"]]:
                    missed.append(("PUBLIC.LIST", i))
        stop.set()
        await load
        assert not missed, f"{len(missed)} reads on n2 missed a write n1 had acknowledged: {missed[:10]}"
    finally:
        stop.set()
        for nc in (writer, reader, noise):
            await nc.close()


async def test_a_minority_node_answers_reads_503(make_cluster):
    lonely, a, b = make_cluster(3)
    nc = await connect(lonely)
    try:
        await create(nc, name="minority.box", ttl=600)
        a.pause()
        b.pause()

        async def refused() -> bool:
            reply = await request(nc, "$mq9.AI.MAILBOX.LIST.minority.box", timeout=10)
            return reply.get("code") == 503 and "current" in reply["error"]
        await wait_for(refused, 20, "a read on the cut-off node to be answered 503")
        status = await request(nc, "$mq9.AI.NODE.STATUS")  # its own view still answers at once
        assert "state" in status
    finally:
        a.resume()
        b.resume()
        await nc.close()

