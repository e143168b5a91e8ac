"""Overload without failed writes: one nats-py connection to a three-node cluster raises
its window of acknowledged publishes 16 -> 64 -> 256 -> 1,024 for 64 KiB, 256 KiB and
1 MiB messages. Every write is acknowledged (none answered 503, none timed out) and the
mailbox holds exactly what was acknowledged, on every node. (Goodput per window is
measured, printed and kept for the benchmark; it is not a pass/fail figure here.)"""

from __future__ import annotations

import asyncio
import json
import time

import nats

from tests.cluster import wait_converged
from tests.mq9 import list_ids

SHAPES = ((64 << 10, 600), (256 << 10, 300), (1 << 20, 120))
WINDOWS = (16, 64, 256, 1024)


async def publish_window(nc, mail_id: str, payload: bytes, window: int, total: int) -> tuple[int, list[str], float]:
    sem = asyncio.Semaphore(window)
    failures: list[str] = []
    ok = 0

    async def one() -> None:
        nonlocal ok
        async with sem:
            try:
                reply = json.loads((await nc.request(f"$mq9.AI.MAILBOX.MSG.{mail_id}", payload, timeout=60)).data)
            except Exception as exc:  # a timeout is a failure too
                failures.append(repr(exc))
                return
            if "error" in reply:
                failures.append(reply["error"])
            else:
                ok += 1

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(total)))
    return ok, failures, time.monotonic() - t0


async def test_wide_windows_of_large_messages_fail_no_write(make_cluster):
    nodes = make_cluster(3)
    nc = await nats.connect(nodes[0].url, pending_size=1 << 30)
    try:
        report = []
        for size, total in SHAPES:
            for window in WINDOWS:
                mail_id = f"overload.{size >> 10}k.w{window}"
                await nc.request("$mq9.AI.MAILBOX.CREATE", json.dumps({"name": mail_id, "ttl": 3600}).encode(), timeout=10)
                ok, failures, seconds = await publish_window(nc, mail_id, b"x" * size, window, total)
                report.append((size >> 10, window, ok, len(failures), ok * size / seconds / 1e6))
                assert not failures, f"{size >> 10} KiB, window {window}: {len(failures)} writes failed: {failures[:3]}"
        for row in report:
            print("%5d KiB  window %5d  %4d ok  %d failed  %6.1f MB/s" % row)
        await wait_converged(nodes, timeout=120)
        for node in nodes:
            other = await nats.connect(node.url)
            try:
                for size, total in SHAPES:
                    for window in WINDOWS:
                        mail_id = f"overload.{size >> 10}k.w{window}"
                        assert len(await list_ids(other, mail_id)) == total, (node.name, mail_id)
            finally:
                await other.close()
    finally:
        await nc.close()


async def test_a_backlog_on_a_node_without_quorum_is_answered_503_promptly(make_cluster):
    """A wide window of large writes to a node cut off from the majority: every write is
    answered 503 "not stored" within about one write timeout, not one timeout per queued
    batch (bounded batches must not turn a backlog into minutes of waiting)."""
    lonely, a, b = make_cluster(3)
    nc = await nats.connect(lonely.url, pending_size=1 << 30)
    try:
        await nc.request("$mq9.AI.MAILBOX.CREATE", json.dumps({"name": "cutoff.box", "ttl": 3600}).encode(), timeout=10)
        a.pause()
        b.pause()
        try:
            t0 = time.monotonic()
            ok, failures, _ = await publish_window(nc, "cutoff.box", b"x" * (256 << 10), 256, 256)
            elapsed = time.monotonic() - t0
        finally:
            a.resume()
            b.resume()
        assert ok == 0 and len(failures) == 256, (ok, failures[:3])
        assert all("not stored" in f or "outcome unknown" in f for f in failures), failures[:3]
        assert elapsed < 20, f"256 writes took {elapsed:.1f}s to be refused"
    finally:
        await nc.close()
