"""RobustMQ's published Python SDK (robustmq 1.0.0) against a node: wire compatibility."""

from __future__ import annotations

import pytest
from robustmq.mq9 import Client, Priority
from robustmq.mq9.client import Mq9Error

from tests.nodes import wait_for


async def test_sdk_create_send_subscribe_list_delete(node):
    async with Client(node.url, request_timeout=5) as client:
        private = await client.create(ttl=300)
        assert private.mail_id.startswith("m-")
        public = await client.create(ttl=300, public=True, name="sdk.tasks", desc="sdk test")
        assert public.mail_id == "sdk.tasks"

        await client.send(public.mail_id, b"low one", priority=Priority.LOW)
        await client.send(public.mail_id, "normal one")
        await client.send(public.mail_id, {"kind": "high one"}, priority=Priority.HIGH)

        async def listed() -> bool:
            return len(await client.list(public.mail_id)) == 3

        await wait_for(listed, 5, "three stored messages")  # send() is fire-and-forget
        metas = await client.list(public.mail_id)
        assert [m.priority for m in metas] == [Priority.HIGH, Priority.NORMAL, Priority.LOW]
        assert all(m.msg_id and m.ts > 0 for m in metas)

        got = []

        async def on_message(msg) -> None:
            got.append(msg)

        await client.subscribe(public.mail_id, on_message)
        await wait_for(lambda: len(got) == 3, 5, "three delivered messages")
        assert [m.priority for m in got] == [Priority.HIGH, Priority.NORMAL, Priority.LOW]
        assert got[1].payload == b"normal one" and got[2].payload == b"low one"

        await client.delete(public.mail_id, metas[0].msg_id)
        assert [m.msg_id for m in await client.list(public.mail_id)] == [metas[1].msg_id, metas[2].msg_id]

        with pytest.raises(Mq9Error) as err:
            await client.delete(public.mail_id, metas[0].msg_id)
        assert err.value.code == 404
        with pytest.raises(Mq9Error):
            await client.list("sdk.never.created")


async def test_sdk_priority_filter_and_queue_group(node):
    async with Client(node.url, request_timeout=5) as client:
        box = await client.create(ttl=300, public=True, name="sdk.filtered", desc="x")
        highs, workers = [], []

        async def on_high(msg) -> None:
            highs.append(msg.payload)

        async def on_work(msg) -> None:
            workers.append(msg.payload)

        await client.subscribe(box.mail_id, on_high, priority="high")
        await client.subscribe(box.mail_id, on_work, queue_group="sdk-workers")
        for i in range(5):
            await client.send(box.mail_id, f"h{i}".encode(), priority=Priority.HIGH)
            await client.send(box.mail_id, f"n{i}".encode())
        await wait_for(lambda: len(highs) == 5 and len(workers) == 10, 5, "filtered and group deliveries")
        assert highs == [f"h{i}".encode() for i in range(5)]
