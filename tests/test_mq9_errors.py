"""Bad mq9 input gets the documented error and the node keeps serving everyone else."""

from __future__ import annotations

import asyncio

import pytest

from tests.mq9 import connect, create, list_ids, request, send
from tests.nodes import wait_for


async def _still_serving(node) -> None:
    nc = await connect(node)
    box = await create(nc, ttl=60)
    assert (await send(nc, box["mail_id"], b"ok"))["msg_id"]
    await nc.close()


@pytest.mark.parametrize("body,fragment", [
    (b"{not json", "invalid request"),
    (b'{"ttl": "soon"}', "invalid request"),
    (b'{"ttl": -1}', "ttl"),
    (b'{"ttl": 1.5}', "invalid request"),
    (b'{"public": true}', "needs a name"),
    (b'{"name": "Has.Upper"}', "invalid name"),
    (b'{"name": "a..b"}', "invalid name"),
    (b'{"name": ".lead"}', "invalid name"),
    (b'{"name": "ends.urgent"}', "invalid name"),
    (b'{"name": "wild.*"}', "invalid name"),
    (b'{"name": "' + b"x" * 129 + b'"}', "invalid name"),
    (b'{"ack_wait": 0}', "ack_wait"),
    (b'{"max_in_flight": 0}', "max_in_flight"),
    (b"[1,2]", "invalid request"),
])
async def test_create_rejects_bad_requests(node, body, fragment):
    nc = await connect(node)
    reply = await request(nc, "$mq9.AI.MAILBOX.CREATE", body)
    assert reply["code"] == 400 and fragment in reply["error"], reply
    assert set(reply) == {"error", "code"}
    await nc.close()
    await _still_serving(node)


async def test_create_is_idempotent_and_keeps_ttl(node):
    nc = await connect(node)
    first = await create(nc, name="idem.box", ttl=120)
    second = await create(nc, name="idem.box", ttl=5000)
    assert first["is_new"] and not second["is_new"]
    assert second["mail_id"] == "idem.box" and second["ttl"] == 120 and second["expires_at"] == first["expires_at"]
    assert "error" not in second
    await nc.close()


async def test_a_name_can_be_created_again_after_expiry(node):
    nc = await connect(node)
    first = await create(nc, name="again.box", ttl=1)
    await send(nc, "again.box", b"old")

    async def recreated() -> bool:
        reply = await request(nc, "$mq9.AI.MAILBOX.CREATE", {"name": "again.box", "ttl": 60})
        return reply.get("is_new") is True

    await wait_for(recreated, 10, "the expired name to be free again")
    info = await request(nc, "$mq9.AI.MAILBOX.INFO.again.box")
    assert info["ttl"] == 60 and info["total"] == 0 and info["expires_at"] > first["expires_at"]
    await nc.close()


async def test_publish_to_unknown_mailbox(node):
    nc = await connect(node)
    reply = await send(nc, "no.such.box", b"x")
    assert reply == {"error": "mailbox no.such.box not found", "code": 404}
    await nc.publish("$mq9.AI.MAILBOX.MSG.no.such.box", b"dropped, never stored")
    await nc.flush()
    assert (await request(nc, "$mq9.AI.MAILBOX.LIST.no.such.box"))["code"] == 404
    async def counted() -> bool:  # logged and counted once its refusal comes back from the log
        return (await request(nc, "$mq9.AI.NODE.STATUS"))["dropped_publishes"] >= 1

    await wait_for(counted, 5, "the dropped publish to be counted")
    await nc.close()
    await _still_serving(node)


async def test_publish_with_invalid_mail_id(node):
    nc = await connect(node)
    reply = await send(nc, "BAD", b"x")
    assert reply["code"] == 400
    await nc.close()


async def test_oversize_payload_is_refused_like_nats_server(node):
    nc = await connect(node)
    box = await create(nc, ttl=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    await reader.readline()
    writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                 + f"PUB $mq9.AI.MAILBOX.MSG.{box['mail_id']} {(1 << 20) + 1}\r\n".encode())
    assert await reader.readline() == b"-ERR 'Maximum Payload Violation'\r\n"
    assert await reader.read() == b""
    assert await list_ids(nc, box["mail_id"]) == []
    await nc.close()
    await _still_serving(node)


@pytest.mark.parametrize("subject", [
    "$mq9.AI.MAILBOX.MSG.>",
    "$mq9.AI.MAILBOX.MSG.*",
    "$mq9.AI.MAILBOX.MSG.*.*",
    "$mq9.AI.MAILBOX.MSG.*.normal",
    "$mq9.AI.MAILBOX.MSG.a.>",
    "$mq9.AI.MAILBOX.>",
    "$mq9.AI.>",
    "$mq9.AI.ACK.>",
    "$mq9.AI.MAILBOX.CREATE",
])
async def test_wildcard_snooping_is_refused_and_connection_stays(node, subject):
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    await reader.readline()
    writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n' + f"SUB {subject} 1\r\nPING\r\n".encode())
    line = await reader.readline()
    assert line == f"-ERR 'Permissions Violation for Subscription to \"{subject}\"'\r\n".encode()
    assert await reader.readline() == b"PONG\r\n"
    writer.close()


async def test_nats_py_sees_permission_error_and_keeps_connection(node):
    errors: list[Exception] = []

    async def on_error(e):
        errors.append(e)

    nc = await connect(node, error_cb=on_error)
    await nc.subscribe("$mq9.AI.MAILBOX.MSG.>")
    await nc.flush()
    box = await create(nc, ttl=60)
    assert box["mail_id"] and nc.is_connected
    await nc.close()


async def test_unknown_mq9_verbs(node):
    nc = await connect(node)
    for subject in ("$mq9.AI.MAILBOX.DESTROY", "$mq9.AI.FOO", "$mq9.AI.MAILBOX.CREATE.extra"):
        reply = await request(nc, subject, b"{}")
        assert reply["code"] == 400 and "unknown mq9 subject" in reply["error"]
    await nc.close()
    await _still_serving(node)


async def test_acks_to_unknown_or_acked_messages(node):
    nc = await connect(node)
    box = await create(nc, ttl=60)
    stored = await send(nc, box["mail_id"], b"once")
    sub = await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}.*")
    msg = await sub.next_msg(timeout=5)
    first = await request(nc, msg.reply, b"+ACK")
    assert first == {"ok": True}
    again = await request(nc, msg.reply, b"+ACK")
    assert again["code"] == 404 and "already acknowledged" in again["error"]
    bogus = await request(nc, f"$mq9.AI.ACK.12345._.{box['mail_id']}", b"+ACK")
    assert bogus["code"] == 404
    malformed = await request(nc, "$mq9.AI.ACK.notanumber", b"+ACK")
    assert malformed["code"] == 400
    weird = await request(nc, msg.reply, b"+MAYBE")
    assert weird["code"] == 400
    assert await list_ids(nc, box["mail_id"]) == []
    assert stored["msg_id"] == msg.headers["mq9-msg-id"]
    await nc.close()


async def test_delete_and_its_errors(node):
    nc = await connect(node)
    box = await create(nc, ttl=60)
    stored = await send(nc, box["mail_id"], b"to delete")
    ok = await request(nc, f"$mq9.AI.MAILBOX.DELETE.{box['mail_id']}.{stored['msg_id']}")
    assert ok == {"deleted": True}
    gone = await request(nc, f"$mq9.AI.MAILBOX.DELETE.{box['mail_id']}.{stored['msg_id']}")
    assert gone["code"] == 404
    bad = await request(nc, f"$mq9.AI.MAILBOX.DELETE.{box['mail_id']}.abc")
    assert bad["code"] == 400
    await nc.close()


async def test_dedup_with_nats_msg_id(node):
    nc = await connect(node)
    box = await create(nc, ttl=60)
    first = await send(nc, box["mail_id"], b"pay 10", headers={"Nats-Msg-Id": "payment-1"})
    retry = await send(nc, box["mail_id"], b"pay 10", headers={"Nats-Msg-Id": "payment-1"})
    other = await send(nc, box["mail_id"], b"pay 20", headers={"Nats-Msg-Id": "payment-2"})
    assert first["msg_id"] == retry["msg_id"] != other["msg_id"]
    assert await list_ids(nc, box["mail_id"]) == [first["msg_id"], other["msg_id"]]
    await nc.close()


async def test_flush_is_a_durability_barrier(node):
    """PONG comes only after every mailbox write sent before the PING is committed.

    Raw socket, so the byte order is exactly PUB x500 then PING. (nats-py 2.16's flush()
    writes its PING straight to the socket, ahead of publishes still queued inside the
    client, so with nats-py yield once before flushing a burst: see docs/protocol.md.)
    """
    nc = await connect(node)
    box = await create(nc, ttl=60)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    await reader.readline()
    frames = b"".join(b"PUB $mq9.AI.MAILBOX.MSG.%s %d\r\n%d\r\n" % (box["mail_id"].encode(), len(str(i)), i)
                      for i in range(500))
    writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n' + frames + b"PING\r\n")
    assert await asyncio.wait_for(reader.readline(), 10) == b"PONG\r\n"
    assert len(await list_ids(nc, box["mail_id"])) == 500  # all stored by the time PONG arrived
    writer.close()
    await nc.close()


async def test_nats_py_flush_after_a_burst(node):
    nc = await connect(node)
    box = await create(nc, ttl=60)
    for i in range(500):
        await nc.publish(f"$mq9.AI.MAILBOX.MSG.{box['mail_id']}", str(i).encode())
    await asyncio.sleep(0)  # let nats-py's flusher write the queued publishes before its PING
    await nc.flush()
    assert len(await list_ids(nc, box["mail_id"])) == 500
    await nc.close()


async def test_list_pages_through_long_mailboxes(node):
    nc = await connect(node)
    box = await create(nc, ttl=60)
    ids = [(await send(nc, box["mail_id"], str(i).encode(), "low" if i % 2 else "critical"))["msg_id"]
           for i in range(25)]
    expected = ids[0::2] + ids[1::2]  # critical first, then low; FIFO within each
    got: list[str] = []
    body: dict = {"limit": 10}
    while True:
        reply = await request(nc, f"$mq9.AI.MAILBOX.LIST.{box['mail_id']}", body)
        got += [m["msg_id"] for m in reply["messages"]]
        if not reply.get("truncated"):
            break
        body = {"limit": 10, "after": got[-1]}
    assert got == expected
    bad = await request(nc, f"$mq9.AI.MAILBOX.LIST.{box['mail_id']}", {"after": "nope"})
    assert bad["code"] == 400
    await nc.close()
