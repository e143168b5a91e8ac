"""Core NATS across the cluster: routes carry interest and messages between nodes."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from nats.errors import NoRespondersError

from tests.nodes import wait_for


async def _conns(nodes):
    return [await nats.connect(n.url, allow_reconnect=False) for n in nodes]


async def _until_routed(pub, subject: str, got: list, timeout: float = 10.0) -> None:
    """Publish probes until a subscriber elsewhere saw one (interest has propagated)."""
    deadline = time.monotonic() + timeout
    while not any(m == b"probe" for m in got):
        assert time.monotonic() < deadline, f"interest in {subject} never reached the publisher's node"
        await pub.publish(subject, b"probe")
        await pub.flush()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)  # let in-flight probes land before counting


def _collector(store: list):
    async def cb(msg) -> None:
        store.append(msg.data)
    return cb


async def test_publish_reaches_every_node_exactly_once(make_cluster):
    a, b, c = make_cluster(3)
    ca, cb, cc = await _conns([a, b, c])
    got_b, got_c, got_wild = [], [], []
    await cb.subscribe("orders.created", cb=_collector(got_b))
    await cc.subscribe("orders.created", cb=_collector(got_c))
    await cc.subscribe("orders.*", cb=_collector(got_wild))
    await _until_routed(ca, "orders.created", got_b)
    await _until_routed(ca, "orders.created", got_c)
    for lst in (got_b, got_c, got_wild):
        lst.clear()
    for i in range(200):
        await ca.publish("orders.created", str(i).encode())
    await ca.flush()
    expected = [str(i).encode() for i in range(200)]
    await wait_for(lambda: len(got_b) >= 200 and len(got_c) >= 200 and len(got_wild) >= 200, 10, "200 each")
    await asyncio.sleep(0.2)
    assert got_b == expected and got_c == expected and got_wild == expected  # once each, in order
    for nc in (ca, cb, cc):
        await nc.close()


async def test_wildcards_match_as_on_one_node(make_cluster):
    a, b, _ = make_cluster(3)
    ca, cb = await _conns([a, b])
    star, tail = [], []
    await cb.subscribe("sensor.*.temp", cb=_collector(star))
    await cb.subscribe("sensor.>", cb=_collector(tail))
    await _until_routed(ca, "sensor.x.temp", star)
    star.clear()
    tail.clear()
    for subject in ("sensor.a.temp", "sensor.b.humidity", "sensor.c.temp.raw", "other.a.temp"):
        await ca.publish(subject, subject.encode())
    await ca.flush()
    await wait_for(lambda: len(tail) >= 3 and len(star) >= 1, 5, "wildcard deliveries")
    await asyncio.sleep(0.2)
    assert star == [b"sensor.a.temp"]
    assert tail == [b"sensor.a.temp", b"sensor.b.humidity", b"sensor.c.temp.raw"]
    await ca.close()
    await cb.close()


async def test_queue_group_across_nodes_gets_each_message_once(make_cluster):
    nodes = make_cluster(3)
    conns = await _conns(nodes)
    got: dict[str, list[bytes]] = {n.name: [] for n in nodes}
    subs = [await nc.subscribe("jobs.run", queue="runners", cb=_collector(got[node.name]))
            for node, nc in zip(nodes, conns)]
    publisher = await nats.connect(nodes[0].url)
    seen_1: list[bytes] = []
    seen_2: list[bytes] = []
    await conns[1].subscribe("jobs.run", cb=_collector(seen_1))
    await conns[2].subscribe("jobs.run", cb=_collector(seen_2))
    await _until_routed(publisher, "jobs.run", seen_1)  # interest from both other nodes has arrived
    await _until_routed(publisher, "jobs.run", seen_2)
    for lst in got.values():
        lst.clear()
    await subs[0].unsubscribe()  # the local member leaves: messages must go to the other nodes' members
    await conns[0].flush()  # once the PONG is back, node 1 has processed the UNSUB
    for lst in got.values():
        lst.clear()
    for i in range(300):
        await publisher.publish("jobs.run", str(i).encode())
    await publisher.flush()
    await wait_for(lambda: sum(len(v) for v in got.values()) >= 300, 10, "300 jobs")
    await asyncio.sleep(0.3)
    all_jobs = [m for v in got.values() for m in v if m != b"probe"]
    assert sorted(all_jobs) == sorted(str(i).encode() for i in range(300)), "a job was lost or run twice"
    assert got[nodes[1].name] and got[nodes[2].name] and not got[nodes[0].name]
    for nc in conns + [publisher]:
        await nc.close()


async def test_queue_group_prefers_a_local_member(make_cluster):
    nodes = make_cluster(3)
    conns = await _conns(nodes)
    got: dict[str, list[bytes]] = {n.name: [] for n in nodes}
    for node, nc in zip(nodes, conns):
        await nc.subscribe("local.first", queue="q", cb=_collector(got[node.name]))
    await conns[0].flush()
    seen: list[bytes] = []
    await conns[1].subscribe("local.first", cb=_collector(seen))
    await _until_routed(conns[0], "local.first", seen)
    for lst in got.values():
        lst.clear()
    for i in range(100):
        await conns[0].publish("local.first", str(i).encode())
    await conns[0].flush()
    await wait_for(lambda: len(got[nodes[0].name]) >= 100, 5, "local deliveries")
    assert len(got[nodes[1].name]) == 0 and len(got[nodes[2].name]) == 0
    for nc in conns:
        await nc.close()


async def test_request_reply_across_nodes_with_headers(make_cluster):
    a, b, c = make_cluster(3)
    server, client = await nats.connect(c.url), await nats.connect(a.url)

    async def echo(msg) -> None:
        await server.publish(msg.reply, msg.data.upper(), headers={**(msg.headers or {}), "Served-By": "c"})

    await server.subscribe("svc.upper", cb=echo)
    await server.flush()

    async def answered() -> bool:
        try:
            return (await client.request("svc.upper", b"ping", timeout=0.5)).data == b"PING"
        except (NoRespondersError, nats.errors.TimeoutError):
            return False

    await wait_for(answered, 10, "the service to be reachable from node a")
    reply = await client.request("svc.upper", b"hello", timeout=2, headers={"Trace-Id": "t-9"})
    assert reply.data == b"HELLO" and reply.headers == {"Trace-Id": "t-9", "Served-By": "c"}
    started = time.monotonic()
    for _ in range(100):
        assert (await client.request("svc.upper", b"x", timeout=2)).data == b"X"
    assert time.monotonic() - started < 10
    await server.close()
    await client.close()


async def test_no_responders_anywhere_in_the_cluster(make_cluster):
    a, _, _ = make_cluster(3)
    nc = await nats.connect(a.url)
    started = time.monotonic()
    with pytest.raises(NoRespondersError):
        await nc.request("nobody.anywhere", b"?", timeout=5)
    assert time.monotonic() - started < 1.0
    await nc.close()


async def test_routing_resumes_after_a_node_restarts(make_cluster):
    a, b, c = make_cluster(3)
    cb_ = await nats.connect(b.url)
    got: list[bytes] = []
    await cb_.subscribe("after.restart", cb=_collector(got))
    await cb_.flush()
    pub = await nats.connect(a.url, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await _until_routed(pub, "after.restart", got)
    b.kill()
    await cb_.close()
    b.start()
    started = time.monotonic()
    cb_ = await nats.connect(b.url)
    got.clear()
    await cb_.subscribe("after.restart", cb=_collector(got))
    await cb_.flush()
    await _until_routed(pub, "after.restart", got, timeout=15)
    assert time.monotonic() - started < 10
    got.clear()
    for i in range(100):
        await pub.publish("after.restart", str(i).encode())
    await pub.flush()
    await wait_for(lambda: len(got) >= 100, 5, "100 after restart")
    await asyncio.sleep(0.2)
    assert got == [str(i).encode() for i in range(100)]  # nothing twice
    await cb_.close()
    await pub.close()


async def test_dead_node_interest_is_dropped(make_cluster):
    a, b, c = make_cluster(3)
    cb_ = await nats.connect(b.url)
    got: list[bytes] = []
    await cb_.subscribe("only.on.b", cb=_collector(got))
    pub = await nats.connect(a.url)
    await _until_routed(pub, "only.on.b", got)
    b.kill()

    async def no_responders() -> bool:
        try:
            await pub.request("only.on.b", b"?", timeout=0.5)
        except NoRespondersError:
            return True
        except nats.errors.TimeoutError:
            return False
        return False

    await wait_for(no_responders, 10, "node b's interest to be dropped")
    await pub.close()


async def test_route_port_refuses_clients_and_strangers(make_cluster):
    nodes = make_cluster(3, env={"MQ9_CLUSTER_SECRET": "route-secret"})
    route_port = nodes[0].port + 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", route_port)
    info = await reader.readline()
    assert info.startswith(b"INFO ") and b'"route":true' in info
    writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
    assert await reader.readline() == b"-ERR 'attempted to connect to route port'\r\n"
    assert await reader.read() == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", route_port)
    await reader.readline()
    forged = f'CONNECT {{"node":"127.0.0.1:{nodes[1].port + 2000}","nonce":"x","route":true,"proof":"00"}}\r\n'
    writer.write(forged.encode())
    assert await reader.readline() == b"-ERR 'attempted to connect to route port'\r\n"
    with pytest.raises(Exception):
        nc = await nats.connect(f"nats://127.0.0.1:{route_port}", connect_timeout=2, allow_reconnect=False,
                                max_reconnect_attempts=0)
        await nc.publish("x", b"y")
        await nc.flush(timeout=1)
