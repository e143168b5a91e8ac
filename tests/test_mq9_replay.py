"""The catch-up replay's two ways of framing: bulk HMSG frames for the usual subscriber,
one frame at a time when the subscription has an UNSUB max or the client takes no headers."""

from __future__ import annotations

import asyncio

from tests.mq9 import connect, create, send


async def _filled(node, name: str, n: int) -> str:
    nc = await connect(node)
    box = (await create(nc, name=name, ttl=600))["mail_id"]
    for i in range(n):
        await send(nc, box, b"m%d" % i, "urgent" if i % 2 else "low")
    await nc.close()
    return box


async def test_a_long_replay_arrives_whole_in_priority_then_fifo_order(node):
    box = await _filled(node, "replay.bulk", 1200)  # more than two replay chunks
    nc = await connect(node)
    got = []
    done = asyncio.Event()

    async def on_msg(msg):
        got.append((msg.subject.rpartition(".")[2], msg.data, msg.headers["mq9-msg-id"], msg.reply))
        if len(got) == 1200:
            done.set()

    await nc.subscribe(f"$mq9.AI.MAILBOX.MSG.{box}.*", cb=on_msg, pending_msgs_limit=5000)
    await asyncio.wait_for(done.wait(), 20)
    words = [w for w, *_ in got]
    assert words == ["urgent"] * 600 + ["low"] * 600
    assert [d for _, d, *_ in got] == [b"m%d" % i for i in range(1, 1200, 2)] + [b"m%d" % i for i in range(0, 1200, 2)]
    assert len({m for _, _, m, _ in got}) == 1200
    assert all(r.startswith("$mq9.AI.ACK.") and r.endswith(f"._.{box}") for *_, r in got)
    await nc.close()


async def _raw_frames(node, connect: bytes, commands: bytes, settle: float = 0.5) -> list[tuple[bytes, bytes]]:
    """(control line, body) of every MSG/HMSG a raw client gets within `settle` seconds."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    await reader.readline()  # INFO
    writer.write(b"CONNECT " + connect + b"\r\n" + commands)
    await writer.drain()
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while loop.time() < deadline:
        try:
            data += await asyncio.wait_for(reader.read(65536), max(0.01, deadline - loop.time()))
        except asyncio.TimeoutError:
            break
    writer.close()
    frames = []
    while True:
        at = min((i for i in (data.find(b"MSG "), data.find(b"HMSG ")) if i >= 0), default=-1)
        if at < 0:
            return frames
        end = data.index(b"\r\n", at)
        head = data[at:end]
        size = int(head.split()[-1])
        body = data[end + 2:end + 2 + size]
        if head.startswith(b"HMSG"):
            body = body[int(head.split()[-2]):]  # past the header block
        frames.append((head, body))
        data = data[end + 2 + size + 2:]


async def test_a_replay_honours_unsub_max_on_the_server(node):
    box = await _filled(node, "replay.max", 1100)  # the max lands inside the first chunk and past it
    sub = b"SUB $mq9.AI.MAILBOX.MSG.%s.* 5\r\n" % box.encode()
    frames = await _raw_frames(node, b'{"verbose":false,"headers":true}', sub + b"UNSUB 5 3\r\nPING\r\n")
    assert [body for _, body in frames] == [b"m1", b"m3", b"m5"]
    frames = await _raw_frames(node, b'{"verbose":false,"headers":true}', sub + b"UNSUB 5 700\r\nPING\r\n", 1.5)
    # 550 urgent (odd numbers) first, then the first 150 low ones: m0, m2 ... m298
    assert len(frames) == 700 and frames[549][1] == b"m1099" and frames[-1][1] == b"m298"


async def test_a_client_without_headers_gets_msg_frames_on_replay(node):
    box = await _filled(node, "replay.noheaders", 4)
    frames = await _raw_frames(node, b'{"verbose":false,"headers":false}',
                               b"SUB $mq9.AI.MAILBOX.MSG.%s.* 7\r\n" % box.encode())
    assert [body for _, body in frames] == [b"m1", b"m3", b"m0", b"m2"]
    assert all(head.startswith(b"MSG ") and head.split()[2] == b"7" and head.split()[3].startswith(b"$mq9.AI.ACK.")
               for head, _ in frames)
