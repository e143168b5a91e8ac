"""nats-py against a node process: every core feature a NATS user relies on."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.errors import NoRespondersError, TimeoutError as NatsTimeout

from tests.nodes import wait_for


async def connect(node, **kw):
    return await nats.connect(node.url, connect_timeout=5, **kw)


async def test_info_and_connect(node):
    nc = await connect(node)
    info = nc._server_info
    assert info["proto"] == 1 and info["headers"] is True
    assert info["max_payload"] == 1 << 20
    assert info["server_name"] == "n1" and info["server_id"].startswith("N") and info["client_id"] > 0
    await nc.close()


async def test_publish_subscribe_callback(node):
    nc = await connect(node)
    got: list[bytes] = []

    async def cb(msg):
        got.append(msg.data)

    await nc.subscribe("greet.*", cb=cb)
    await nc.flush()
    for i in range(100):
        await nc.publish(f"greet.{i}", f"hello {i}".encode())
    await wait_for(lambda: len(got) == 100, 5, "100 messages")
    assert got == [f"hello {i}".encode() for i in range(100)]
    await nc.close()


async def test_subscribe_iterator_and_wildcards(node):
    nc = await connect(node)
    sub = await nc.subscribe("a.>")
    star = await nc.subscribe("a.*.c")
    await nc.flush()
    for subject in ("a.b", "a.b.c", "a.x.c", "b.a", "a"):
        await nc.publish(subject, subject.encode())
    await nc.flush()
    seen = [(await sub.next_msg(timeout=2)).subject for _ in range(3)]
    assert seen == ["a.b", "a.b.c", "a.x.c"]
    assert [(await star.next_msg(timeout=2)).subject for _ in range(2)] == ["a.b.c", "a.x.c"]
    with pytest.raises(NatsTimeout):
        await sub.next_msg(timeout=0.3)
    await nc.close()


async def test_async_iterator(node):
    nc = await connect(node)
    sub = await nc.subscribe("iter", max_msgs=3)
    await nc.flush()
    for i in range(5):
        await nc.publish("iter", str(i).encode())
    got = [m.data async for m in sub.messages]
    assert got == [b"0", b"1", b"2"]
    await nc.close()


async def test_queue_groups_share_work(node):
    nc = await connect(node)
    counts = {"a": 0, "b": 0, "plain": 0}

    def counter(key):
        async def cb(msg):
            counts[key] += 1
        return cb

    await nc.subscribe("jobs", queue="workers", cb=counter("a"))
    await nc.subscribe("jobs", queue="workers", cb=counter("b"))
    await nc.subscribe("jobs", cb=counter("plain"))
    await nc.flush()
    for _ in range(200):
        await nc.publish("jobs", b"x")
    await wait_for(lambda: counts["plain"] == 200 and counts["a"] + counts["b"] == 200, 5, "all jobs")
    assert counts["a"] > 0 and counts["b"] > 0
    await nc.close()


async def test_request_reply_with_and_without_headers(node):
    server = await connect(node)
    client = await connect(node)

    async def echo(msg):
        headers = dict(msg.headers or {})
        headers["Served-By"] = "echo"
        await msg.respond(msg.data.upper()) if not msg.headers else await server.publish(
            msg.reply, msg.data.upper(), headers=headers
        )

    await server.subscribe("svc.echo", cb=echo)
    await server.flush()
    reply = await client.request("svc.echo", b"hi", timeout=2)
    assert reply.data == b"HI" and not reply.headers
    reply = await client.request("svc.echo", b"hdr", timeout=2, headers={"Trace-Id": "t-1"})
    assert reply.data == b"HDR"
    assert reply.headers["Trace-Id"] == "t-1" and reply.headers["Served-By"] == "echo"
    await server.close()
    await client.close()


async def test_no_responders(node):
    nc = await connect(node)
    with pytest.raises(NoRespondersError):
        await nc.request("nobody.home", b"?", timeout=2)
    await nc.close()


async def test_headers_both_ways(node):
    nc = await connect(node)
    sub = await nc.subscribe("h.test")
    await nc.flush()
    await nc.publish("h.test", b"body", headers={"A": "1", "B": "two words"})
    msg = await sub.next_msg(timeout=2)
    assert msg.data == b"body" and msg.headers == {"A": "1", "B": "two words"}
    await nc.close()


async def test_unsubscribe_with_max(node):
    nc = await connect(node)
    got = []

    async def cb(msg):
        got.append(msg.data)

    sub = await nc.subscribe("limited", cb=cb)
    await sub.unsubscribe(limit=3)
    await nc.flush()
    for i in range(6):
        await nc.publish("limited", str(i).encode())
    await nc.flush()
    probe = await nc.subscribe("limited")  # a second subscriber proves the later ones were sent
    await nc.flush()
    await nc.publish("limited", b"last")
    assert (await probe.next_msg(timeout=2)).data == b"last"
    assert got == [b"0", b"1", b"2"]
    await nc.close()


async def test_unsubscribe_stops_delivery(node):
    nc = await connect(node)
    sub = await nc.subscribe("gone")
    await nc.flush()
    await sub.unsubscribe()
    other = await nc.subscribe("gone")
    await nc.flush()
    await nc.publish("gone", b"x")
    assert (await other.next_msg(timeout=2)).data == b"x"
    await nc.close()


async def test_drain(node):
    nc = await connect(node)
    pub = await connect(node)
    got = []

    async def slow(msg):
        await asyncio.sleep(0.001)
        got.append(msg.data)

    await nc.subscribe("drain.me", cb=slow)
    await nc.flush()
    for i in range(50):
        await pub.publish("drain.me", str(i).encode())
    await pub.flush()
    await wait_for(lambda: len(got) > 0, 5, "first message")
    await nc.drain()
    assert got == [str(i).encode() for i in range(50)]
    assert nc.is_closed
    await pub.close()


async def test_flush_round_trip(node):
    nc = await connect(node)
    for _ in range(20):
        await nc.flush(timeout=2)
    assert nc.stats["out_msgs"] == 0
    await nc.close()


async def test_echo_false(node):
    nc = await connect(node, no_echo=True)
    other = await connect(node)
    sub = await nc.subscribe("echo.test")
    osub = await other.subscribe("echo.test")
    await nc.flush()
    await other.flush()
    await nc.publish("echo.test", b"mine")
    await other.publish("echo.test", b"theirs")
    await nc.flush()
    await other.flush()
    assert (await sub.next_msg(timeout=2)).data == b"theirs"
    assert {(await osub.next_msg(timeout=2)).data for _ in range(2)} == {b"mine", b"theirs"}
    await nc.close()
    await other.close()


async def test_large_payload_roundtrip(node):
    nc = await connect(node)
    sub = await nc.subscribe("big")
    await nc.flush()
    body = bytes(range(256)) * 4096  # exactly 1 MiB, the max_payload
    await nc.publish("big", body)
    assert (await sub.next_msg(timeout=5)).data == body
    await nc.close()


async def test_reconnect_to_restarted_node(make_node):
    n = make_node("restart").start()
    reconnected = asyncio.Event()

    async def on_reconnect():
        reconnected.set()

    nc = await nats.connect(n.url, reconnected_cb=on_reconnect, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    got = []

    async def cb(msg):
        got.append(msg.data)

    await nc.subscribe("after.restart", cb=cb)
    await nc.flush()
    n.kill()
    n.start()
    await asyncio.wait_for(reconnected.wait(), 15)
    await nc.flush()  # the subscription was replayed on reconnect
    await nc.publish("after.restart", b"back")
    await wait_for(lambda: got == [b"back"], 5, "message after restart")
    await nc.close()


async def test_sigterm_drains_cleanly(make_node):
    n = make_node("term").start()
    nc = await nats.connect(n.url, allow_reconnect=False)
    await nc.flush()
    assert n.stop() == 0
    await wait_for(lambda: nc.is_closed or not nc.is_connected, 5, "client to see the close")
    assert "Server exiting" in n.log_path.read_text()
