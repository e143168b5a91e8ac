"""Limits that keep a node alive: slow consumers, stale connections, bounded memory."""

from __future__ import annotations

import asyncio
import socket
import threading

import nats

from tests.nodes import wait_for


async def test_slow_consumer_is_cut_off_and_memory_stays_bounded(make_node):
    n = make_node("slow", extra=["--max-pending", str(8 << 20)]).start()
    lazy = socket.create_connection(("127.0.0.1", n.port))
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    lazy.recv(4096)  # INFO
    lazy.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB flood 1\r\nPING\r\n')
    assert b"PONG" in lazy.recv(4096)
    healthy = await nats.connect(n.url)
    hsub = await healthy.subscribe("other")
    pub = await nats.connect(n.url, pending_size=64 << 20)
    await pub.flush()
    rss_before = n.rss_bytes()
    chunk = b"x" * 65536
    for _ in range(3000):  # ~190 MiB towards a reader that never reads
        await pub.publish("flood", chunk)
        if _ % 100 == 0:
            await pub.flush(timeout=10)
    await pub.flush(timeout=10)
    await wait_for(lambda: "slow consumer" in n.log_path.read_text(), 10, "the slow consumer to be cut off")
    assert n.rss_bytes() - rss_before < 120 << 20
    lazy.settimeout(5)
    received = 0
    try:
        while True:  # what the kernel buffered, then EOF or reset
            data = lazy.recv(1 << 20)
            if not data:
                break
            received += len(data)
    except (ConnectionResetError, socket.timeout):
        pass
    assert received < 190 << 20
    await healthy.publish("other", b"fine")
    assert (await hsub.next_msg(timeout=2)).data == b"fine"
    await pub.close()
    await healthy.close()


async def test_million_message_publisher_does_not_grow_memory(make_node):
    n = make_node("million").start()
    frame = len(b"MSG stream 1 128\r\n") + 128 + 2
    total = 1_000_000 * frame
    received = 0

    def reader() -> None:  # a subscriber that keeps up, on its own thread
        nonlocal received
        sock = socket.create_connection(("127.0.0.1", n.port))
        sock.recv(4096)
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB stream 1\r\nPING\r\n')
        assert sock.recv(100) == b"PONG\r\n"
        ready.set()
        while received < total:
            data = sock.recv(1 << 20)
            if not data:
                break
            received += len(data)
        sock.close()

    ready = threading.Event()
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert ready.wait(5)
    pub = await nats.connect(n.url)
    payload = b"p" * 128
    rss_start = n.rss_bytes()
    peak = rss_start
    for i in range(1_000_000):
        await pub.publish("stream", payload)
        if i % 50_000 == 0:
            await pub.flush(timeout=10)
            peak = max(peak, n.rss_bytes())
    await pub.flush(timeout=10)
    await wait_for(lambda: received >= total, 60, "all million messages delivered")
    peak = max(peak, n.rss_bytes())
    assert received == total
    assert peak - rss_start < 64 << 20, f"RSS grew by {(peak - rss_start) >> 20} MiB"
    await pub.close()


async def test_stale_connection_closed_after_unanswered_pings(make_node):
    n = make_node("stale", extra=["--ping-interval", "0.2"]).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", n.port)
    await reader.readline()
    writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 5)
        if not line:
            break
        lines.append(line)
    assert lines == [b"PING\r\n", b"PING\r\n", b"-ERR 'Stale Connection'\r\n"]
    writer.close()


async def test_client_answering_pings_stays(make_node):
    n = make_node("lively", extra=["--ping-interval", "0.2"]).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", n.port)
    await reader.readline()
    writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
    for _ in range(5):  # five server PINGs answered: more than max_pings_out
        assert await asyncio.wait_for(reader.readline(), 5) == b"PING\r\n"
        writer.write(b"PONG\r\n")
    writer.write(b"SUB x 1\r\nPUB x 2\r\nok\r\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"MSG x 1 2\r\n"
    writer.close()
