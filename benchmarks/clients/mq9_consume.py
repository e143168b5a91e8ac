"""mq9_clients.py's consuming workloads: fan-out (3), catch-up (4) and the work queue (5).

Subscribers count deliveries and the rate runs to the last one. mq9 consumers subscribe
to `$mq9.AI.MAILBOX.MSG.{mail_id}.*` (stored messages first, then live ones), workers in
a queue group acking each task; JetStream's use ordered push consumers, and its workers
fetch from a durable pull consumer. Subscriptions take everything one run can hold
(no client-side drops). A run cut by its deadline reports what it got, "complete": false.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from nats.errors import TimeoutError as NatsTimeoutError

from benchmarks.clients.common import PENDING_SIZE, Progress, client_name, close_all, connect, note
from benchmarks.clients.subjects import MQ9_MSG, WQ_STREAM, WQ_SUBJECT, mq9_subject


async def fanout(a: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    k = a.subs
    expected = a.count * k
    state = {"delivered": 0, "last": 0.0}
    done = asyncio.Event()
    progress = Progress(expected)

    async def on_msg(msg) -> None:
        state["delivered"] += 1
        state["last"] = time.perf_counter()
        if state["delivered"] >= expected:
            done.set()
        progress(state["delivered"])

    conns = []
    try:
        for i in range(k):
            nc = await connect(a.urls[i % len(a.urls)], f"bench-fan-sub{i}", pending_size=PENDING_SIZE)
            conns.append(nc)
            if a.system == "mq9":
                await nc.subscribe(f"{MQ9_MSG}{a.target}.*", cb=on_msg, pending_msgs_limit=expected + 1,
                                   pending_bytes_limit=1 << 34)
            else:
                js = nc.jetstream()
                await js.subscribe(a.target, cb=on_msg, ordered_consumer=True, pending_msgs_limit=expected + 1,
                                   pending_bytes_limit=1 << 34)
            await nc.flush(timeout=5)
        pub = await connect(a.urls[0], "bench-fan-pub", pending_size=PENDING_SIZE)
        conns.append(pub)
        subject = mq9_subject(a.target) if a.system == "mq9" else a.target
        payload = b"x" * a.size
        start = time.perf_counter()
        sent = 0
        while sent < a.count:
            if sent % 1024 == 0:
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0)  # let subscribers run while publishing
            await pub.publish(subject, payload)
            sent += 1
        flush_ok = True
        try:
            await pub.flush(timeout=max(0.001, deadline - loop.time()))  # mq9: every message stored
        except Exception as exc:
            flush_ok = False
            note(exc)
        if sent < a.count:
            expected = sent * k
            if state["delivered"] >= expected:
                done.set()
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        got = state["delivered"]
        secs = (state["last"] - start) if got else (time.perf_counter() - start)
    finally:
        await close_all(conns)
    progress(got, force=True)
    return {"workload": "fanout", "system": a.system, "client": client_name(), "msgs": a.count, "size": a.size,
            "subs": k, "sent": sent, "expected": expected, "delivered": got, "seconds": round(secs, 6),
            "rate": round(got / secs, 1) if secs > 0 else 0.0, "flush_ok": flush_ok,
            "complete": sent == a.count and got == expected and flush_ok}


async def catchup(a: argparse.Namespace) -> dict:
    """A new subscriber reads a pre-filled mailbox / stream (the harness filled it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    state = {"got": 0, "last": 0.0, "levels": {}}
    done = asyncio.Event()
    progress = Progress(a.count)

    async def on_msg(msg) -> None:
        state["got"] += 1
        state["last"] = time.perf_counter()
        word = msg.subject.rpartition(".")[2]
        state["levels"][word] = state["levels"].get(word, 0) + 1
        if state["got"] >= a.count:
            done.set()
        progress(state["got"])

    nc = await connect(a.urls[-1], "bench-catchup", pending_size=PENDING_SIZE)
    try:
        start = time.perf_counter()
        if a.system == "mq9":
            await nc.subscribe(f"{MQ9_MSG}{a.target}.*", cb=on_msg, pending_msgs_limit=a.count + 1,
                               pending_bytes_limit=1 << 34)
        else:
            js = nc.jetstream()
            await js.subscribe(a.target, cb=on_msg, ordered_consumer=True, pending_msgs_limit=a.count + 1,
                               pending_bytes_limit=1 << 34)
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        got = state["got"]
        secs = (state["last"] - start) if got else (time.perf_counter() - start)
    finally:
        await close_all([nc])
    progress(got, force=True)
    return {"workload": "catchup", "system": a.system, "client": client_name(), "msgs": a.count,
            "delivered": got, "by_subject_token": state["levels"], "seconds": round(secs, 6),
            "rate": round(got / secs, 1) if secs > 0 else 0.0, "complete": got == a.count}


async def workqueue(a: argparse.Namespace) -> dict:
    """K workers ack tasks while one producer publishes them; rate up to the workers' final flush.

    Each task carries its number ("t<i>;xxx..."), so a redelivered task counts once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + a.timeout
    seen = bytearray(a.count)
    state = {"distinct": 0, "redelivered": 0, "fetch_errors": 0}
    all_done = asyncio.Event()
    stop = asyncio.Event()
    progress = Progress(a.count)

    def mark(data: bytes) -> None:
        try:
            i = int(data[1:data.index(b";")])
        except ValueError:
            return
        if 0 <= i < a.count:
            if seen[i]:
                state["redelivered"] += 1
            else:
                seen[i] = 1
                state["distinct"] += 1
                if state["distinct"] >= a.count:
                    all_done.set()
        progress(state["distinct"])

    conns, tasks = [], []
    try:
        for i in range(a.workers):
            nc = await connect(a.urls[i % len(a.urls)], f"bench-worker{i}", pending_size=PENDING_SIZE)
            conns.append(nc)
            if a.system == "mq9":
                async def on_task(msg) -> None:
                    await msg.ack()
                    mark(msg.data)

                await nc.subscribe(f"{MQ9_MSG}{a.target}.*", queue="workers", cb=on_task,
                                   pending_msgs_limit=a.count + 1, pending_bytes_limit=1 << 34)
            else:
                js = nc.jetstream()
                psub = await js.pull_subscribe_bind(durable=a.target, stream=WQ_STREAM)

                async def fetcher(psub=psub) -> None:
                    while not stop.is_set() and loop.time() < deadline:
                        try:
                            msgs = await psub.fetch(a.batch, timeout=0.5)
                        except (NatsTimeoutError, asyncio.TimeoutError):
                            continue
                        except Exception as exc:
                            state["fetch_errors"] += 1
                            note(exc)
                            await asyncio.sleep(0.01)
                            continue
                        for m in msgs:
                            await m.ack()
                            mark(m.data)

                tasks.append(asyncio.create_task(fetcher()))
            await nc.flush(timeout=5)
        prod = await connect(a.urls[0], "bench-producer", pending_size=PENDING_SIZE)
        conns.append(prod)
        subject = mq9_subject(a.target) if a.system == "mq9" else WQ_SUBJECT
        filler = b"x" * a.size
        start = time.perf_counter()
        sent = 0
        while sent < a.count:
            if sent % 512 == 0:
                if loop.time() > deadline:
                    break
                await asyncio.sleep(0)
            head = b"t%d;" % sent
            await prod.publish(subject, head + filler[len(head):])
            sent += 1
        flush_ok = True
        try:
            await prod.flush(timeout=max(0.001, deadline - loop.time()))
        except Exception as exc:
            flush_ok = False
            note(exc)
        try:
            await asyncio.wait_for(all_done.wait(), timeout=max(0.001, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        stop.set()
        acks_flushed = True
        for nc in conns[:a.workers]:  # the acks are on the wire (mq9: committed) once this returns
            try:
                await nc.flush(timeout=max(1.0, deadline - loop.time()))
            except Exception as exc:
                acks_flushed = False
                note(exc)
        secs = time.perf_counter() - start
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all(conns)
    got = state["distinct"]
    progress(got, force=True)
    return {"workload": "workqueue", "system": a.system, "client": client_name(), "msgs": a.count,
            "size": a.size, "workers": a.workers, "sent": sent, "distinct": got,
            "redelivered": state["redelivered"], "fetch_errors": state["fetch_errors"], "seconds": round(secs, 6),
            "rate": round(got / secs, 1) if secs > 0 else 0.0, "flush_ok": flush_ok, "acks_flushed": acks_flushed,
            "complete": sent == a.count and got == a.count and flush_ok and acks_flushed}
