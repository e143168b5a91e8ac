"""natspy_bench.py's workloads: publish to k subscribers (pub, fanout) and request/reply.

Publisher and subscribers are separate connections in one process and event loop, so
the figures are client-bound: what an agent written with nats-py sees. With a separate
subscriber URL (another node of a cluster), an interest probe comes first: requests on
the subject until one is answered, so the subscription has reached the publisher's
server before the clock starts; pub/fanout then stop waiting STALL_S after the last
delivery once the publisher has flushed ("stalled": true), as messages lost between
servers would otherwise hold the run until its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.clients.common import client_name, connect, note

SUBJECT = "bench.core.py"
PROBE = b"natspy-probe"
PROBE_WAIT_S = 15.0
STALL_S = 3.0  # --sub-url pub/fanout: stop waiting this long after the last delivery
async def probe_interest(nc, payload: bytes, deadline: float) -> int:
    """Requests on SUBJECT from nc until one is answered: the subscribers' interest has
    reached nc's server (and nc's reply interest theirs). Returns the requests it took."""
    loop = asyncio.get_running_loop()
    until = min(deadline, loop.time() + PROBE_WAIT_S)
    tries = 0
    while True:
        tries += 1
        try:
            await nc.request(SUBJECT, payload, timeout=0.5)
            return tries
        except Exception as exc:  # no responders (at once) or a timeout
            if loop.time() > until:
                raise TimeoutError(f"no answer to the interest probe after {tries} requests "
                                   f"(subscription not propagated between servers?): {exc!r}") from exc
            await asyncio.sleep(0.02)


async def pubsub(args: argparse.Namespace, k: int) -> dict:
    """One publisher connection, k subscriber connections counting deliveries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    expected = args.count * k
    state = {"delivered": 0, "last": 0.0}
    done = asyncio.Event()

    async def on_msg(msg) -> None:
        state["delivered"] += 1
        state["last"] = time.perf_counter()
        if state["delivered"] >= expected:
            done.set()

    async def on_msg_or_probe(msg) -> None:
        if msg.reply and msg.data == PROBE:
            await msg.respond(b"ok")
            return
        await on_msg(msg)

    probing = args.sub_url is not None
    subs, conns = [], []
    for _ in range(k):
        nc = await connect(args.sub_url or args.url, "natspy-sub")
        conns.append(nc)
        # no client-side drops: the limits are far above what one run can hold
        subs.append(await nc.subscribe(SUBJECT, cb=on_msg_or_probe if probing else on_msg,
                                       pending_msgs_limit=expected + 1, pending_bytes_limit=1 << 34))
        await nc.flush(timeout=5)  # SUB is live on the server
    pub = await connect(args.url, "natspy-pub")
    conns.append(pub)
    probes = await probe_interest(pub, PROBE, deadline) if probing else 0

    payload = b"x" * args.size
    start = time.perf_counter()
    sent = 0
    while sent < args.count:
        if sent % 4096 == 0 and loop.time() > deadline:
            break
        await pub.publish(SUBJECT, payload)
        sent += 1
    flush_ok = True
    try:
        await pub.flush(timeout=max(0.001, deadline - loop.time()))
    except Exception:
        flush_ok = False
    pub_end = time.perf_counter()
    if sent < args.count:  # deadline hit while publishing: wait for what was sent
        expected = sent * k
        if state["delivered"] >= expected:
            done.set()
    stalled = False
    while not done.is_set() and loop.time() < deadline:
        try:
            await asyncio.wait_for(done.wait(), timeout=max(0.001, min(0.5, deadline - loop.time())))
        except asyncio.TimeoutError:
            # --sub-url: nothing for STALL_S since the flush or the last delivery: the rest were
            # lost between the servers; do not wait out the deadline
            if probing and time.perf_counter() - max(state["last"], pub_end) > STALL_S:
                stalled = True
                break
    got = state["delivered"]
    secs = (state["last"] - start) if got else (time.perf_counter() - start)
    for nc in conns:
        await nc.close()
    return {
        "mode": args.mode, "client": client_name(), "msgs": args.count, "size": args.size, "subs": k,
        "sent": sent, "expected": expected, "delivered": got, "seconds": round(secs, 6),
        "rate": round(got / secs, 1) if secs > 0 else 0.0,
        "pub_rate": round(sent / (pub_end - start), 1) if pub_end > start else 0.0, "probes": probes,
        "stalled": stalled, "flush_ok": flush_ok, "complete": sent == args.count and got == expected and flush_ok,
    }


async def reqrep(args: argparse.Namespace) -> dict:
    """One responder connection echoing; C concurrent sequential requesters on one connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    resp = await connect(args.sub_url or args.url, "natspy-responder")

    async def on_request(msg) -> None:
        await msg.respond(msg.data)

    await resp.subscribe(SUBJECT, cb=on_request)
    await resp.flush(timeout=5)
    req = await connect(args.url, "natspy-requester")
    payload = b"x" * args.size
    # the responder echoes anything: the probe is an ordinary request, not counted
    probes = await probe_interest(req, payload, deadline) if args.sub_url is not None else 0
    counts = {"issued": 0, "completed": 0, "errors": 0}

    async def requester() -> None:
        while counts["issued"] < args.count and loop.time() < deadline:
            counts["issued"] += 1
            try:
                await req.request(SUBJECT, payload, timeout=min(5.0, max(0.001, deadline - loop.time())))
                counts["completed"] += 1
            except Exception as exc:
                counts["errors"] += 1
                note(repr(exc))

    start = time.perf_counter()
    await asyncio.gather(*(requester() for _ in range(args.concurrency)))
    secs = time.perf_counter() - start
    await req.close()
    await resp.close()
    done = counts["completed"]
    return {
        "mode": "reqrep", "client": client_name(), "msgs": args.count, "size": args.size,
        "workers": args.concurrency, "completed": done, "errors": counts["errors"],
        "seconds": round(secs, 6), "rate": round(done / secs, 1) if secs > 0 else 0.0,
        "mean_latency_us": round(secs * 1e6 * args.concurrency / done, 1) if done else 0.0, "probes": probes,
        "complete": done == args.count,
    }
