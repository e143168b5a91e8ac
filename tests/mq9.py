"""Small helpers that speak mq9 through nats-py, as an agent would."""

from __future__ import annotations

import json

import nats


async def connect(node_or_url, **kw):
    url = node_or_url if isinstance(node_or_url, str) else node_or_url.url
    return await nats.connect(url, connect_timeout=5, **kw)


async def request(nc, subject: str, body: bytes | dict = b"", timeout: float = 5.0, headers=None) -> dict:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    msg = await nc.request(subject, body, timeout=timeout, headers=headers)
    return json.loads(msg.data)


async def create(nc, **fields) -> dict:
    reply = await request(nc, "$mq9.AI.MAILBOX.CREATE", fields)
    assert "error" not in reply, reply
    return reply


async def send(nc, mail_id: str, body: bytes, priority: str | None = None, headers=None) -> dict:
    subject = f"$mq9.AI.MAILBOX.MSG.{mail_id}" + (f".{priority}" if priority else "")
    return await request(nc, subject, body, headers=headers)


async def list_ids(nc, mail_id: str) -> list[str]:
    reply = await request(nc, f"$mq9.AI.MAILBOX.LIST.{mail_id}", b"{}")
    return [m["msg_id"] for m in reply["messages"]]


async def collect(sub, n: int, timeout: float = 5.0) -> list:
    return [await sub.next_msg(timeout=timeout) for _ in range(n)]
